# Slurm integration (label `slurm`): starts a one-node cluster on loopback with
# scripts/start-slurm.sh (installs slurm-wlm and munge when missing; needs root) and runs a
# 4-point sweep as a job array (tests/slurm/slurm_sweep_test.sh). Skipped (77) without root.
add_test(NAME slurm_sweep COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/slurm/slurm_sweep_test.sh
         $<TARGET_FILE:kvlab> ${CMAKE_SOURCE_DIR})
set_tests_properties(slurm_sweep PROPERTIES LABELS slurm TIMEOUT 900 SKIP_RETURN_CODE 77 RUN_SERIAL TRUE)

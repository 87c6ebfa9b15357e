# End-to-end checks of `kvlab calibrate` (tests/cli/calibrate_test.sh).
add_test(NAME cli_calibrate COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/cli/calibrate_test.sh
         $<TARGET_FILE:kvlab> ${CMAKE_SOURCE_DIR})
set_tests_properties(cli_calibrate PROPERTIES LABELS integration TIMEOUT 120)

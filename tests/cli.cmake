# End-to-end checks of the kvlab command (tests/cli/cli_test.sh).
add_test(NAME cli_end_to_end COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/cli/cli_test.sh
         $<TARGET_FILE:kvlab> ${CMAKE_SOURCE_DIR})
set_tests_properties(cli_end_to_end PROPERTIES LABELS integration TIMEOUT 300)

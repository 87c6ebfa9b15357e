# Tokenizer ids against the reference implementation (tests/tokenizer/reference.mjs, label
# integration). Needs node and tests/tokenizer/node_modules:
#   (cd tests/tokenizer && npm ci --ignore-scripts)
# Without them the test fails with that message instead of skipping.
find_program(KVLAB_NODE node)
if(NOT KVLAB_NODE)
  set(KVLAB_NODE "")
endif()
add_executable(tokenizer_reference_check ${CMAKE_CURRENT_LIST_DIR}/tokenizer/reference_check.cpp)
target_link_libraries(tokenizer_reference_check PRIVATE kvlab_model nlohmann_json::nlohmann_json)
add_test(NAME tokenizer_reference
         COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/tokenizer/run_check.sh "${KVLAB_NODE}"
                 ${CMAKE_CURRENT_LIST_DIR}/tokenizer $<TARGET_FILE:tokenizer_reference_check>
                 ${CMAKE_CURRENT_BINARY_DIR}/tokenizer_reference)
set_tests_properties(tokenizer_reference PROPERTIES LABELS integration TIMEOUT 600)

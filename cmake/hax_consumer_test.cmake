# SPDX-License-Identifier: MIT
# Script run by the install:consumer test: installs hax from HAX_BINARY_DIR into a private prefix,
# then builds and runs the consumer project against it with find_package(hax).
file(REMOVE_RECURSE "${HAX_WORK_DIR}")
set(prefix "${HAX_WORK_DIR}/prefix")
execute_process(COMMAND ${CMAKE_COMMAND} --install "${HAX_BINARY_DIR}" --prefix "${prefix}"
  RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "installing hax failed (${rc})")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -S "${HAX_CONSUMER_SOURCE_DIR}" -B "${HAX_WORK_DIR}/build"
    "-DCMAKE_PREFIX_PATH=${prefix};${CMAKE_PREFIX_PATH}" -DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER}
    -DCMAKE_BUILD_TYPE=${CMAKE_BUILD_TYPE}
  RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "configuring the consumer against the installed hax failed (${rc})")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build "${HAX_WORK_DIR}/build" RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "building the consumer failed (${rc})")
endif()
execute_process(COMMAND "${HAX_WORK_DIR}/build/hax_consumer" RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "the consumer exited with ${rc}")
endif()

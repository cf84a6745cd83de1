# Builds a small program against zmp the way a user would, then runs it.
#   MODE=find_package:      install zmp into a prefix, then find_package(zmp) from there
#   MODE=add_subdirectory:  add_subdirectory() zmp's source tree
# with the compiler CXX, in Release as a user's first build would be; a build that prints a
# warning fails the check.
cmake_minimum_required(VERSION 3.25)
file(REMOVE_RECURSE ${WORK})
set(project_dir ${CMAKE_CURRENT_LIST_DIR}/project)

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "command failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  set(last_output "${out}" PARENT_SCOPE)
  set(last_errors "${err}" PARENT_SCOPE)
endfunction()

function(build dir)
  run(${CMAKE_COMMAND} --build ${dir} -j2)
  if("${last_output}${last_errors}" MATCHES "warning:")
    message(FATAL_ERROR "the build in ${dir} printed warnings:\n${last_output}\n${last_errors}")
  endif()
endfunction()

if(MODE STREQUAL "find_package")
  run(${CMAKE_COMMAND} -S ${SOURCE} -B ${WORK}/zmp-build -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=${CXX}
      -DZMP_BUILD_TESTS=OFF -DZMP_BUILD_EXAMPLES=OFF -DZMP_BUILD_BENCH=OFF -DCMAKE_INSTALL_PREFIX=${WORK}/prefix)
  build(${WORK}/zmp-build)
  run(${CMAKE_COMMAND} --install ${WORK}/zmp-build)
  run(${CMAKE_COMMAND} -S ${project_dir} -B ${WORK}/user-build -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=${CXX}
      -DCMAKE_PREFIX_PATH=${WORK}/prefix -DZMP_CONSUME=find_package)
else()
  run(${CMAKE_COMMAND} -S ${project_dir} -B ${WORK}/user-build -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=${CXX}
      -DZMP_CONSUME=add_subdirectory -DZMP_SOURCE=${SOURCE})
endif()
build(${WORK}/user-build)
run(${WORK}/user-build/consumer)
if(NOT last_output MATCHES "consumer ok: 42")
  message(FATAL_ERROR "unexpected output from the consumer: ${last_output}")
endif()
message(STATUS "${MODE}: ${last_output}")

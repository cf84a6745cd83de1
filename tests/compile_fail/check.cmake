# Builds a target that must not compile and checks what the compiler says about it.
#   cmake -DBUILD_DIR=... -DTARGET=... -DEXPECT=<regex> -DEXPECT_COUNT=<n> [-DEXPECT2=<regex> -DEXPECT2_COUNT=<n>]
#         -DFORBID=<regex> -P check.cmake
execute_process(COMMAND ${CMAKE_COMMAND} --build ${BUILD_DIR} --target ${TARGET}
                RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE err)
set(all "${out}${err}")
if(result EQUAL 0)
  message(FATAL_ERROR "${TARGET} compiled, but it must not")
endif()
foreach(which "" "2")
  if(DEFINED EXPECT${which})
    string(REGEX MATCHALL "${EXPECT${which}}" found "${all}")
    list(LENGTH found count)
    if(NOT count EQUAL EXPECT${which}_COUNT)
      message(FATAL_ERROR "expected ${EXPECT${which}_COUNT} times '${EXPECT${which}}', found ${count}:\n${all}")
    endif()
  endif()
endforeach()
if(all MATCHES "${FORBID}")
  message(FATAL_ERROR "the compiler said '${CMAKE_MATCH_0}', which a user should never have to read:\n${all}")
endif()
message(STATUS "${TARGET}: the expected messages, and only them")

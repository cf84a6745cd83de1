# The layering of zmp, checked mechanically (docs/layout.md explains it; CTest runs this script as
# test_layout, label unit):   cmake -DZMP_SOURCE_DIR=<repository> -P cmake/check_layout.cmake
#
# Arrows point down: examples, tests, bench, workers -> core -> transport. Inside core, the
# components are ordered below, lowest first; a component may include its own headers and those
# of the components before it, never one after it, so there is no cycle between components.
# Public headers (core/include/zmp/) belong to the component that implements them; the
# vocabulary (errors, timeouts, deadlines, Python's error texts, call sites) is self-contained and shared by
# every layer, the transport layer included. Any include this script cannot place is a failure:
# a new component or public header is added here, in its place in the order.

cmake_minimum_required(VERSION 3.25)

set(ZMP_CORE_ORDER base runtime travel shm broker sync queue manager pipe process logging pool)

# Public header (relative to core/include/zmp/) -> the component it belongs to.
set(ZMP_PUBLIC_vocabulary errors.hpp timeout.hpp detail/deadline.hpp detail/error_texts.hpp detail/source_location.hpp)
set(ZMP_PUBLIC_base log_level.hpp)
set(ZMP_PUBLIC_runtime authkey.hpp)
set(ZMP_PUBLIC_travel function.hpp exceptions.hpp any_value.hpp detail/handle_codec.hpp)
set(ZMP_PUBLIC_shm shared_memory.hpp sharedctypes.hpp detail/lock_cell.hpp)
set(ZMP_PUBLIC_broker detail/object_handle.hpp detail/managed_wire.hpp remote.hpp)
set(ZMP_PUBLIC_sync sync.hpp)
set(ZMP_PUBLIC_queue queue.hpp)
set(ZMP_PUBLIC_manager manager.hpp)
set(ZMP_PUBLIC_pipe pipe.hpp connection.hpp)
set(ZMP_PUBLIC_process process.hpp context.hpp)
set(ZMP_PUBLIC_logging logging.hpp)
set(ZMP_PUBLIC_pool pool.hpp detail/pool_job.hpp detail/pool_results.hpp detail/pool_tasks.hpp futures.hpp thread_pool.hpp
    detail/thread_tasks.hpp worker.hpp)
# zmp.hpp, the umbrella header, is for programs that use zmp: nothing inside zmp includes it.

if(NOT ZMP_SOURCE_DIR)
  get_filename_component(ZMP_SOURCE_DIR "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
endif()

set(violations "")
macro(violation text)
  list(APPEND violations "${text}")
endmacro()

# rank_of(<out> <component>): position in the layer order; vocabulary -2, transport -1.
function(rank_of out component)
  if(component STREQUAL "vocabulary")
    set(${out} -2 PARENT_SCOPE)
  elseif(component STREQUAL "transport")
    set(${out} -1 PARENT_SCOPE)
  else()
    list(FIND ZMP_CORE_ORDER "${component}" index)
    set(${out} ${index} PARENT_SCOPE)
  endif()
endfunction()

# owner_of_public(<out> <path under zmp/>): the component a public header belongs to, or "".
function(owner_of_public out header)
  set(${out} "" PARENT_SCOPE)
  if(header MATCHES "^transport/")
    set(${out} transport PARENT_SCOPE)
    return()
  endif()
  foreach(component vocabulary ${ZMP_CORE_ORDER})
    if(header IN_LIST ZMP_PUBLIC_${component})
      set(${out} ${component} PARENT_SCOPE)
      return()
    endif()
  endforeach()
endfunction()

# Every public header is placed, and every placed header exists.
file(GLOB_RECURSE public_headers RELATIVE "${ZMP_SOURCE_DIR}/core/include/zmp" "${ZMP_SOURCE_DIR}/core/include/zmp/*.hpp")
foreach(header IN LISTS public_headers)
  owner_of_public(owner "${header}")
  if(owner STREQUAL "" AND NOT header STREQUAL "zmp.hpp")
    violation("core/include/zmp/${header}: a public header this script does not place (add it to a ZMP_PUBLIC_ list)")
  endif()
endforeach()
foreach(component vocabulary ${ZMP_CORE_ORDER})
  foreach(header IN LISTS ZMP_PUBLIC_${component})
    if(NOT EXISTS "${ZMP_SOURCE_DIR}/core/include/zmp/${header}")
      violation("cmake/check_layout.cmake places zmp/${header}, which does not exist")
    endif()
  endforeach()
endforeach()
# Every folder of core/src is a component in the order.
file(GLOB component_dirs LIST_DIRECTORIES true RELATIVE "${ZMP_SOURCE_DIR}/core/src" "${ZMP_SOURCE_DIR}/core/src/*")
foreach(dir IN LISTS component_dirs)
  if(IS_DIRECTORY "${ZMP_SOURCE_DIR}/core/src/${dir}" AND NOT dir IN_LIST ZMP_CORE_ORDER)
    violation("core/src/${dir}/: a component missing from ZMP_CORE_ORDER")
  endif()
endforeach()

# check_file(<file relative to the source dir> <component> <rank>): each quoted or angled include
# of zmp's own headers is placed and is not above the file's rank. Private headers are included
# as "component/file.hpp" (core/src is the include root), public ones as "zmp/...".
function(check_file file component rank)
  file(STRINGS "${ZMP_SOURCE_DIR}/${file}" lines REGEX "^[ \t]*#[ \t]*include[ \t]*[<\"]")
  set(found "")
  foreach(line IN LISTS lines)
    string(REGEX REPLACE "^[ \t]*#[ \t]*include[ \t]*[<\"]([^>\"]+)[>\"].*$" "\\1" target "${line}")
    set(target_component "")
    if(target MATCHES "^zmp/(.+)$")
      owner_of_public(target_component "${CMAKE_MATCH_1}")
      if(target_component STREQUAL "" AND NOT CMAKE_MATCH_1 STREQUAL "zmp.hpp")
        list(APPEND found "${file}: includes ${target}, which is not one of zmp's headers")
        continue()
      endif()
      if(CMAKE_MATCH_1 STREQUAL "zmp.hpp")
        if(NOT component STREQUAL "example")
          list(APPEND found "${file}: includes zmp/zmp.hpp, the umbrella header for programs that use zmp")
        endif()
        continue()
      endif()
    elseif(target MATCHES "^([a-z_]+)/" AND CMAKE_MATCH_1 IN_LIST ZMP_CORE_ORDER)
      set(target_component "${CMAKE_MATCH_1}")
      if(component STREQUAL "transport" OR component STREQUAL "public" OR component STREQUAL "example")
        list(APPEND found "${file}: includes core's private header ${target}")
        continue()
      endif()
    else()
      continue()  # the standard library, the system and third-party libraries, or a file beside it
    endif()
    if(component STREQUAL "transport" AND NOT target_component MATCHES "^(transport|vocabulary)$")
      list(APPEND found "${file}: the transport layer includes ${target} (core's ${target_component})")
      continue()
    endif()
    rank_of(target_rank "${target_component}")
    if(target_rank GREATER rank)
      list(APPEND found "${file} (${component}): includes ${target}, of ${target_component}, a component above it")
    endif()
  endforeach()
  set(file_violations "${found}" PARENT_SCOPE)
endfunction()

set(checked 0)
# transport: its own headers and the vocabulary only.
file(GLOB_RECURSE files RELATIVE "${ZMP_SOURCE_DIR}" "${ZMP_SOURCE_DIR}/transport/*.hpp" "${ZMP_SOURCE_DIR}/transport/*.cpp")
foreach(file IN LISTS files)
  check_file("${file}" transport -1)
  list(APPEND violations ${file_violations})
  math(EXPR checked "${checked} + 1")
endforeach()
# core/src/<component>/: itself and what is below it.
foreach(component IN LISTS ZMP_CORE_ORDER)
  rank_of(rank "${component}")
  file(GLOB_RECURSE files RELATIVE "${ZMP_SOURCE_DIR}" "${ZMP_SOURCE_DIR}/core/src/${component}/*.hpp"
       "${ZMP_SOURCE_DIR}/core/src/${component}/*.cpp")
  foreach(file IN LISTS files)
    check_file("${file}" "${component}" ${rank})
    list(APPEND violations ${file_violations})
    math(EXPR checked "${checked} + 1")
  endforeach()
endforeach()
# Public headers: contracts that include no private header and nothing above their component.
foreach(header IN LISTS public_headers)
  owner_of_public(owner "${header}")
  if(owner STREQUAL "")
    continue()  # zmp.hpp includes every public header, which is its purpose
  endif()
  rank_of(rank "${owner}")
  if(owner STREQUAL "vocabulary")
    # Self-contained: the vocabulary includes only the vocabulary.
    check_file("core/include/zmp/${header}" transport -2)
  else()
    check_file("core/include/zmp/${header}" public ${rank})
  endif()
  list(APPEND violations ${file_violations})
  math(EXPR checked "${checked} + 1")
endforeach()
# Examples show the public API: no private header of core.
file(GLOB_RECURSE files RELATIVE "${ZMP_SOURCE_DIR}" "${ZMP_SOURCE_DIR}/examples/*.cpp" "${ZMP_SOURCE_DIR}/examples/*.hpp")
list(LENGTH ZMP_CORE_ORDER top)
foreach(file IN LISTS files)
  check_file("${file}" example ${top})
  list(APPEND violations ${file_violations})
  math(EXPR checked "${checked} + 1")
endforeach()

list(LENGTH violations count)
if(count GREATER 0)
  list(JOIN violations "\n  " text)
  message(FATAL_ERROR "zmp's layering has ${count} violation(s) (docs/layout.md):\n  ${text}")
endif()
message(STATUS "layout: ${checked} files, no include against the layer order (${ZMP_CORE_ORDER})")

# CMake package of libfewlabels. scripts/install.sh PREFIX installs it into
# PREFIX/lib/cmake/fewlabels, beside PREFIX/lib/libfewlabels.so and PREFIX/include/fewlabels.h.
#
#   find_package(fewlabels 0.1 REQUIRED)       # -DCMAKE_PREFIX_PATH=PREFIX if not a system prefix
#   target_link_libraries(app PRIVATE fewlabels::fewlabels)          # the shared library
#   target_link_libraries(app PRIVATE fewlabels::fewlabels_static)   # the static one, if installed
#
# Both targets carry the include folder. The prefix is found from this file's place, so an
# installed tree may be moved as a whole.
cmake_minimum_required(VERSION 3.14)

get_filename_component(_fewlabels_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
set(fewlabels_INCLUDE_DIRS "${_fewlabels_prefix}/include")

if(APPLE)
  set(_fewlabels_shared "${_fewlabels_prefix}/lib/libfewlabels.dylib")
else()
  set(_fewlabels_shared "${_fewlabels_prefix}/lib/libfewlabels.so")
endif()
set(_fewlabels_static "${_fewlabels_prefix}/lib/libfewlabels.a")

if(NOT EXISTS "${fewlabels_INCLUDE_DIRS}/fewlabels.h" OR NOT EXISTS "${_fewlabels_shared}")
  set(fewlabels_FOUND FALSE)
  set(fewlabels_NOT_FOUND_MESSAGE
      "fewlabels.h or ${_fewlabels_shared} is missing under ${_fewlabels_prefix}")
  return()
endif()

if(NOT TARGET fewlabels::fewlabels)
  add_library(fewlabels::fewlabels SHARED IMPORTED)
  # The library has no SONAME: link it as -lfewlabels, not by its full path.
  set_target_properties(fewlabels::fewlabels PROPERTIES
    IMPORTED_LOCATION "${_fewlabels_shared}"
    IMPORTED_NO_SONAME TRUE
    INTERFACE_INCLUDE_DIRECTORIES "${fewlabels_INCLUDE_DIRS}")
endif()

if(EXISTS "${_fewlabels_static}" AND NOT TARGET fewlabels::fewlabels_static)
  include(CMakeFindDependencyMacro)
  find_dependency(Threads)
  add_library(fewlabels::fewlabels_static STATIC IMPORTED)
  set(_fewlabels_static_deps Threads::Threads ${CMAKE_DL_LIBS})
  if(UNIX AND NOT APPLE)
    list(APPEND _fewlabels_static_deps m)
  endif()
  set_target_properties(fewlabels::fewlabels_static PROPERTIES
    IMPORTED_LOCATION "${_fewlabels_static}"
    INTERFACE_INCLUDE_DIRECTORIES "${fewlabels_INCLUDE_DIRS}"
    INTERFACE_LINK_LIBRARIES "${_fewlabels_static_deps}")
endif()

set(fewlabels_LIBRARIES fewlabels::fewlabels)
unset(_fewlabels_shared)
unset(_fewlabels_static)
unset(_fewlabels_static_deps)

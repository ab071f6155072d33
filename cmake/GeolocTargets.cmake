set(GEOLOC_COMPONENT_TARGETS "")

function(geoloc_warnings target)
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers>)
  # GCC 12's -Wmaybe-uninitialized misfires inside Eigen's AVX-512 code; clang has no such option
  target_compile_options(${target} PRIVATE $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<CXX_COMPILER_ID:GNU>>:-Wno-maybe-uninitialized>)
endfunction()

function(geoloc_optimise target)
  if(CMAKE_BUILD_TYPE STREQUAL "Release" OR CMAKE_BUILD_TYPE STREQUAL "RelWithDebInfo")
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-O3>)
  endif()
endfunction()

# geoloc_component(NAME DEPS ...): a static library geoloc_NAME from src/NAME/*.cpp
function(geoloc_component name)
  cmake_parse_arguments(A "" "" "DEPS" ${ARGN})
  file(GLOB _src CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/${name}/*.cpp ${PROJECT_SOURCE_DIR}/src/${name}/*/*.cpp)
  if(NOT GEOLOC_X86_KERNELS)  # the per-ISA kernel files are x86 only
    list(FILTER _src EXCLUDE REGEX "_(avx2|avx512)\\.cpp$")
  endif()
  if(NOT _src)
    set(_src ${PROJECT_SOURCE_DIR}/cmake/empty.cpp)
  endif()
  add_library(geoloc_${name} STATIC ${_src})
  set_property(GLOBAL APPEND PROPERTY GEOLOC_LIBRARY_SOURCES ${_src})  # for the shared library (GeolocShared)
  add_library(geoloc::geoloc_${name} ALIAS geoloc_${name})
  target_include_directories(geoloc_${name} PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include> $<INSTALL_INTERFACE:include>)
  # the library's internal headers (never installed), included as "<component>/<name>.hpp"
  target_include_directories(geoloc_${name} PRIVATE ${PROJECT_SOURCE_DIR}/src)
  target_compile_features(geoloc_${name} PUBLIC cxx_std_20)
  target_link_libraries(geoloc_${name} PUBLIC ${A_DEPS})
  if(GEOLOC_HAS_CUDA)
    target_compile_definitions(geoloc_${name} PUBLIC GEOLOC_HAS_CUDA=1)
  endif()
  geoloc_warnings(geoloc_${name})
  geoloc_optimise(geoloc_${name})
  set_target_properties(geoloc_${name} PROPERTIES EXPORT_NAME geoloc_${name})
  set(GEOLOC_COMPONENT_TARGETS ${GEOLOC_COMPONENT_TARGETS} geoloc_${name} PARENT_SCOPE)
endfunction()

# geoloc_test(NAME [DEPS ...] [EXCLUDE file ...]): one doctest executable from tests/NAME/*.cpp (less the
# EXCLUDE'd files, e.g. those of a library the executable links), registered with CTest
function(geoloc_test name)
  cmake_parse_arguments(A "" "" "DEPS;LABELS;EXCLUDE" ${ARGN})
  file(GLOB _src CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/tests/${name}/*.cpp ${PROJECT_SOURCE_DIR}/tests/${name}/*.cu)
  foreach(_x ${A_EXCLUDE})
    list(REMOVE_ITEM _src ${PROJECT_SOURCE_DIR}/tests/${name}/${_x})
  endforeach()
  if(NOT _src)
    return()
  endif()
  add_executable(geoloc_${name}_tests ${PROJECT_SOURCE_DIR}/tests/doctest_main.cpp ${_src})
  target_link_libraries(geoloc_${name}_tests PRIVATE ${A_DEPS} doctest::doctest)
  target_include_directories(geoloc_${name}_tests PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  target_compile_definitions(geoloc_${name}_tests PRIVATE
    GEOLOC_DATA_DIR="${PROJECT_SOURCE_DIR}/data" GEOLOC_TEST_DIR="${PROJECT_SOURCE_DIR}/tests"
    GEOLOC_BIN_DIR="${CMAKE_BINARY_DIR}/bin" GEOLOC_TEST_CPU_PATH=1)
  geoloc_warnings(geoloc_${name}_tests)
  geoloc_optimise(geoloc_${name}_tests)
  add_test(NAME ${name} COMMAND geoloc_${name}_tests --force-colors=0)
  if(A_LABELS)
    set_tests_properties(${name} PROPERTIES LABELS "${A_LABELS}")
  endif()
endfunction()

# geoloc_op_table_library(): the op table (tests/ops/op_table.hpp) as a static library, shared by the ops
# test and bench_ops (and by any build that runs the same rows against another backend implementation).
function(geoloc_op_table_library)
  if(TARGET geoloc_op_table)
    return()
  endif()
  file(GLOB _rows CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/tests/ops/rows/*.cpp)
  add_library(geoloc_op_table STATIC ${PROJECT_SOURCE_DIR}/tests/ops/op_table.cpp ${_rows})
  target_link_libraries(geoloc_op_table PUBLIC geoloc_nn)
  target_include_directories(geoloc_op_table PUBLIC ${PROJECT_SOURCE_DIR}/tests/ops PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  geoloc_warnings(geoloc_op_table)
  geoloc_optimise(geoloc_op_table)
endfunction()

include(GNUInstallDirs)
include(CMakePackageConfigHelpers)
install(DIRECTORY include/geoloc DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
if(BUILD_SHARED_LIBS)  # libgeoloc.so alone; the static components are only for the test suite
  install(TARGETS geoloc EXPORT geolocTargets
          ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
else()
  install(TARGETS geoloc ${GEOLOC_COMPONENT_TARGETS} EXPORT geolocTargets
          ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
endif()
if(BUILD_SHARED_LIBS)  # the installed program finds libgeoloc.so relative to itself
  set_target_properties(geoloc_cli PROPERTIES INSTALL_RPATH "$ORIGIN/../${CMAKE_INSTALL_LIBDIR}")
endif()
install(TARGETS geoloc_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY data/ DESTINATION ${CMAKE_INSTALL_DATADIR}/geoloc)
set(_cmakedir ${CMAKE_INSTALL_LIBDIR}/cmake/geoloc)
install(EXPORT geolocTargets NAMESPACE geoloc:: DESTINATION ${_cmakedir})
# a static geoloc_pipeline links FAISS privately: the consumer's link needs it (libgeoloc.so holds it inside)
if(GEOLOC_HAS_FAISS AND NOT BUILD_SHARED_LIBS)
  set(GEOLOC_FAISS_DEPENDENCY ON)
else()
  set(GEOLOC_FAISS_DEPENDENCY OFF)
endif()
configure_package_config_file(cmake/geolocConfig.cmake.in ${CMAKE_BINARY_DIR}/geolocConfig.cmake
                              INSTALL_DESTINATION ${_cmakedir})
write_basic_package_version_file(${CMAKE_BINARY_DIR}/geolocConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/geolocConfig.cmake ${CMAKE_BINARY_DIR}/geolocConfigVersion.cmake
              cmake/Finds2.cmake cmake/Findstb.cmake DESTINATION ${_cmakedir})

# pkg-config: geoloc.pc beside the CMake package (lib/pkgconfig). Shared: -lgeoloc; static: the component
# archives in link order and the libraries they use (s2geometry and the Abseil pieces its headers call,
# stb, libjpeg-turbo, libarchive, zlib, threads, dl).
set(GEOLOC_PC_REQUIRES "")  # shared: the public headers need no third-party package
if(BUILD_SHARED_LIBS)
  set(GEOLOC_PC_LIBS "-L\${libdir} -lgeoloc")
else()
  set(GEOLOC_PC_LIBS "-L\${libdir}")
  foreach(_c pipeline comm viz earth image nn geo core)
    string(APPEND GEOLOC_PC_LIBS " -lgeoloc_${_c}")
  endforeach()
  foreach(_l ${S2_LIBRARY} ${STB_LIBRARY})
    get_filename_component(_d ${_l} DIRECTORY)
    get_filename_component(_n ${_l} NAME_WE)
    string(REGEX REPLACE "^lib" "" _n ${_n})
    string(APPEND GEOLOC_PC_LIBS " -L${_d} -l${_n}")
  endforeach()
  get_target_property(_s2_deps geoloc::s2 INTERFACE_LINK_LIBRARIES)
  foreach(_l ${_s2_deps})
    get_filename_component(_n ${_l} NAME_WE)
    string(REGEX REPLACE "^lib" "" _n ${_n})
    string(APPEND GEOLOC_PC_LIBS " -l${_n}")
  endforeach()
  string(APPEND GEOLOC_PC_LIBS " -lturbojpeg -larchive -lz")  # geoloc_image: JPEG decoding, tar shards, PNG guard
  if(GEOLOC_HAS_MPI)  # geoloc_comm: MPI's C library
    foreach(_l ${MPI_CXX_LIBRARIES})
      get_filename_component(_d ${_l} DIRECTORY)
      get_filename_component(_n ${_l} NAME_WE)
      string(REGEX REPLACE "^lib" "" _n ${_n})
      string(APPEND GEOLOC_PC_LIBS " -L${_d} -l${_n}")
    endforeach()
  endif()
  if(GEOLOC_HAS_NCCL)
    string(APPEND GEOLOC_PC_LIBS " -lnccl")
  endif()
  if(GEOLOC_HAS_FAISS)  # geoloc_pipeline: Debian's static libfaiss.a, its OpenMP runtime, BLAS and LAPACK
    string(APPEND GEOLOC_PC_LIBS " -lfaiss ${OpenMP_CXX_FLAGS} -llapack -lblas")
  endif()
  if(GEOLOC_HAS_CUDA)  # the CUDA backend inside geoloc_core: runtime, cuBLAS(Lt), cuDNN
    get_filename_component(_cudnn_dir ${CUDNN_LIBRARY} DIRECTORY)
    string(APPEND GEOLOC_PC_LIBS " -L${CUDAToolkit_LIBRARY_DIR} -L${_cudnn_dir} -Wl,-rpath,${CUDAToolkit_LIBRARY_DIR}"
                                 " -Wl,-rpath,${_cudnn_dir} -lcudnn -lcublasLt -lcublas -lcudart")
  endif()
  string(APPEND GEOLOC_PC_LIBS " -pthread ${CMAKE_DL_LIBS}")
  if(CMAKE_DL_LIBS)
    string(REPLACE " ${CMAKE_DL_LIBS}" " -l${CMAKE_DL_LIBS}" GEOLOC_PC_LIBS "${GEOLOC_PC_LIBS}")
  endif()
  set(GEOLOC_PC_REQUIRES "nlohmann_json eigen3")
endif()
file(RELATIVE_PATH GEOLOC_PC_PREFIX "/p/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/p")  # relocatable: from pcfiledir
configure_file(cmake/geoloc.pc.in ${CMAKE_BINARY_DIR}/geoloc.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/geoloc.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

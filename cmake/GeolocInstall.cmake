include(GNUInstallDirs)
include(CMakePackageConfigHelpers)
install(DIRECTORY include/geoloc DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS geoloc ${GEOLOC_COMPONENT_TARGETS} EXPORT geolocTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(TARGETS geoloc_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY data/ DESTINATION ${CMAKE_INSTALL_DATADIR}/geoloc)
set(_cmakedir ${CMAKE_INSTALL_LIBDIR}/cmake/geoloc)
install(EXPORT geolocTargets NAMESPACE geoloc:: DESTINATION ${_cmakedir})
configure_package_config_file(cmake/geolocConfig.cmake.in ${CMAKE_BINARY_DIR}/geolocConfig.cmake
                              INSTALL_DESTINATION ${_cmakedir})
write_basic_package_version_file(${CMAKE_BINARY_DIR}/geolocConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/geolocConfig.cmake ${CMAKE_BINARY_DIR}/geolocConfigVersion.cmake
              cmake/Finds2.cmake cmake/Findstb.cmake DESTINATION ${_cmakedir})

# The public API, like LevelDB's include/leveldb/: these headers are installed
# as <fanflow/NAME>; every other header stays internal. Each is written to
# ${PROJECT_BINARY_DIR}/include/fanflow/ by public_header.cmake, which fails the
# build if one of them includes an internal header.
set(FANFLOW_PUBLIC_HEADERS
  src/core/status.h=status.h
  src/core/bus.h=bus.h
  src/core/event.h=event.h
  src/pipeline/processor.h=processor.h
  src/pipeline/batch_runner.h=batch_runner.h)

set(include_map "")
foreach(pair IN LISTS FANFLOW_PUBLIC_HEADERS)
  string(REGEX REPLACE "^src/" "" pair "${pair}")
  list(APPEND include_map "${pair}")
endforeach()
string(REPLACE ";" "|" include_map "${include_map}")  # no list separator on a command line

set(installed_headers "")
foreach(pair IN LISTS FANFLOW_PUBLIC_HEADERS)
  string(REPLACE "=" ";" pair "${pair}")
  list(GET pair 0 source)
  list(GET pair 1 name)
  set(out ${PROJECT_BINARY_DIR}/include/fanflow/${name})
  add_custom_command(OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DIN=${PROJECT_SOURCE_DIR}/${source} -DOUT=${out} -DSOURCE_NAME=${source}
            "-DPUBLIC=${include_map}" -P ${PROJECT_SOURCE_DIR}/cmake/public_header.cmake
    DEPENDS ${PROJECT_SOURCE_DIR}/${source} ${PROJECT_SOURCE_DIR}/cmake/public_header.cmake
    COMMENT "Public header <fanflow/${name}>"
    VERBATIM)
  list(APPEND installed_headers ${out})
endforeach()
add_custom_target(fanflow_public_headers ALL DEPENDS ${installed_headers})
install(FILES ${installed_headers} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/fanflow)

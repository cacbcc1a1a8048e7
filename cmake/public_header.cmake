# cmake -DIN=/src/core/bus.h -DOUT=.../fanflow/bus.h -DSOURCE_NAME=src/core/bus.h
#       -DPUBLIC="core/status.h=status.h|core/bus.h=bus.h|..." -P public_header.cmake
# Writes the installed copy of a public header: each #include "core/x.h" of
# another public header becomes #include <fanflow/x.h>. Any other quoted
# include fails: a public header must not need an internal one.
string(REPLACE "|" ";" PUBLIC "${PUBLIC}")
file(READ "${IN}" text)
foreach(pair IN LISTS PUBLIC)
  string(REPLACE "=" ";" pair "${pair}")
  list(GET pair 0 from)
  list(GET pair 1 to)
  string(REPLACE "#include \"${from}\"" "#include <fanflow/${to}>" text "${text}")
endforeach()
string(REGEX MATCH "#include \"[^\"]+\"" internal "${text}")
if(internal)
  message(FATAL_ERROR "${SOURCE_NAME} is a public header but has ${internal}, an internal header: "
                      "make that one public too (cmake/public_headers.cmake) or do without it")
endif()
file(WRITE "${OUT}" "// Installed from ${SOURCE_NAME}; see docs/CPP_API.md.\n${text}")

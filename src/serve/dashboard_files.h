// The dashboard's files (src/serve/dashboard), compiled into the binary by
// cmake/embed_files.cmake: serve reads nothing from disk and loads nothing
// from the network to show its page.
#pragma once

#include <string_view>
#include <vector>

namespace fanflow {

struct EmbeddedFile {
  const char* url;  // the path it is served at
  const char* content_type;
  std::string_view bytes;
};

const std::vector<EmbeddedFile>& DashboardFiles();

}  // namespace fanflow

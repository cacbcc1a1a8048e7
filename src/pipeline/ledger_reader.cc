#include "pipeline/ledger_reader.h"

#include <filesystem>

namespace fanflow {

Result<std::unique_ptr<LedgerReader>> LedgerReader::Open(const std::string& path,
                                                         const std::string& flag) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    return InvalidArgument(flag + " '" + path +
                           "': no ledger there (pass the aggregator's --state file)");
  auto ledger = Ledger::OpenReadOnly(path);
  if (!ledger.ok()) return InvalidArgument(flag + ": " + ledger.status().message());
  return std::unique_ptr<LedgerReader>(new LedgerReader(std::move(ledger).value()));
}

}  // namespace fanflow

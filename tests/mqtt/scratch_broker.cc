#include "tests/mqtt/scratch_broker.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace fanflow::mqtt::test {
namespace {

// A port the kernel just handed out on loopback (free unless someone races us).
int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

std::string Quote(const std::string& s) { return "'" + s + "'"; }

}  // namespace

ScratchBroker::ScratchBroker(std::string extra_conf, BrokerConfig config)
    : extra_conf_(std::move(extra_conf)),
      config_(config),
      port_(FreePort()),
      tls_port_(FreePort()),
      auth_port_(FreePort()) {
  char tmpl[] = "/tmp/fanflow-scratch-broker-XXXXXX";
  dir_ = mkdtemp(tmpl);
  log_ = dir_ + "/mosquitto/mosquitto.log";
}

ScratchBroker::~ScratchBroker() {
  std::system((Env() + " " FANFLOW_SOURCE_DIR "/scripts/mosquitto-stop.sh --wipe 2>/dev/null").c_str());
  std::filesystem::remove_all(dir_);
}

std::string ScratchBroker::Env() const {
  std::string stock;
  if (config_ != BrokerConfig::kInherit)
    stock = std::string("FANFLOW_MQTT_STOCK=") + (config_ == BrokerConfig::kStock ? "1 " : "0 ");
  return stock + "FANFLOW_RUN_DIR=" + Quote(dir_) + " FANFLOW_MQTT_PORT=" + std::to_string(port_) +
         " FANFLOW_MQTTS_PORT=" + std::to_string(tls_port_) + " FANFLOW_MQTT_AUTH_PORT=" +
         std::to_string(auth_port_) + " FANFLOW_MQTT_EXTRA_CONF=" + Quote(extra_conf_);
}

bool ScratchBroker::Start() {
  return std::system((Env() + " " FANFLOW_SOURCE_DIR "/scripts/mosquitto-start.sh >/dev/null 2>&1").c_str()) == 0;
}

void ScratchBroker::Stop() {
  std::system((Env() + " " FANFLOW_SOURCE_DIR "/scripts/mosquitto-stop.sh 2>/dev/null").c_str());
}

std::string ScratchBroker::url() const { return "mqtt://127.0.0.1:" + std::to_string(port_); }

std::string ScratchBroker::tls_url() const {
  return "mqtts://127.0.0.1:" + std::to_string(tls_port_) + "?cacert=" + dir_ + "/mosquitto/tls/ca.crt";
}

std::string ScratchBroker::password() const {
  std::ifstream in(dir_ + "/mosquitto/password");
  std::string pw;
  in >> pw;
  return pw;
}

std::string ScratchBroker::auth_url() const {
  return "mqtt://fanflow:" + password() + "@127.0.0.1:" + std::to_string(auth_port_);
}

}  // namespace fanflow::mqtt::test

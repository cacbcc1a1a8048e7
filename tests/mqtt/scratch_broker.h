// A Mosquitto of a test's own, started and stopped (by pid) through
// scripts/mosquitto-start.sh / mosquitto-stop.sh with a private state dir and
// free ports, for tests that restart the broker or need other settings than
// the shared test broker's.
#pragma once

#include <string>

namespace fanflow::mqtt::test {

// kTuned: docker/mosquitto.conf's settings; kStock: Mosquitto's defaults, only
// listeners and auth set (FANFLOW_MQTT_STOCK=1); kInherit: whichever the
// test's environment asks for (FANFLOW_MQTT_STOCK), so the suite runs on both.
enum class BrokerConfig { kInherit, kTuned, kStock };

class ScratchBroker {
 public:
  // `extra_conf` is appended to the broker configuration (later lines win).
  explicit ScratchBroker(std::string extra_conf = "", BrokerConfig config = BrokerConfig::kInherit);
  ~ScratchBroker();  // stops the broker and deletes its state

  // Starts (or restarts with the same state dir); false if it did not come up.
  bool Start();
  // SIGTERM by pid: Mosquitto saves its persistence file on the way out.
  void Stop();

  std::string url() const;      // mqtt://127.0.0.1:PORT
  std::string tls_url() const;  // mqtts://127.0.0.1:PORT?cacert=...
  std::string auth_url() const;  // mqtt://fanflow:PASSWORD@127.0.0.1:PORT
  std::string password() const;
  const std::string& log_path() const { return log_; }

 private:
  std::string Env() const;

  std::string dir_;
  std::string extra_conf_;
  BrokerConfig config_;
  std::string log_;
  int port_, tls_port_, auth_port_;
};

}  // namespace fanflow::mqtt::test

#include "adapters/mqtt/mqtt_paho_threads.h"

#include <MQTTAsync.h>
#include <dirent.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

namespace fanflow::mqtt {
namespace {

// A real-time signal nobody else in fanflow uses; installed once, and only if
// the process (an embedding program, say) has no handler for it already.
int WakeSignal() {
  static const int sig = [] {
    const int candidate = SIGRTMIN + 5;
    struct sigaction current {};
    if (sigaction(candidate, nullptr, &current) != 0 || current.sa_handler != SIG_DFL) return 0;
    struct sigaction wake {};
    wake.sa_handler = [](int) {};
    wake.sa_flags = SA_RESTART;  // any other call it lands in carries on
    sigemptyset(&wake.sa_mask);
    return sigaction(candidate, &wake, nullptr) == 0 ? candidate : 0;
  }();
  return sig;
}

std::string FirstLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// Whether the thread is inside a sleep call now (/proc/<tid>/syscall starts
// with the number of the call it is blocked in).
bool Asleep(const std::string& task) {
  const std::string call = FirstLine(task + "/syscall");
  char* end = nullptr;
  const long number = std::strtol(call.c_str(), &end, 10);
  return end != call.c_str() && (number == SYS_clock_nanosleep || number == SYS_nanosleep);
}

// Whether the thread blocks `sig` (a blocked real-time signal would queue up).
bool Blocks(const std::string& task, int sig) {
  std::ifstream status(task + "/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("SigBlk:", 0) == 0) return (std::strtoull(line.c_str() + 7, nullptr, 16) >> (sig - 1)) & 1;
  return true;
}

}  // namespace

void KeepNetworkThreadsRunning() {
  static const bool kept = [] {
    MQTTAsync idle = nullptr;
    return MQTTAsync_create(&idle, "tcp://127.0.0.1:1", "fanflow-idle", MQTTCLIENT_PERSISTENCE_NONE,
                            nullptr) == MQTTASYNC_SUCCESS;
  }();
  (void)kept;
}

void WakeSleepingReceiveThread() {
  const int sig = WakeSignal();
  if (sig == 0) return;
  DIR* tasks = opendir("/proc/self/task");
  if (!tasks) return;
  while (const dirent* entry = readdir(tasks)) {
    char* end = nullptr;
    const long tid = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0') continue;
    const std::string task = std::string("/proc/self/task/") + entry->d_name;
    if (FirstLine(task + "/comm") == "MQTTAsync_rcv" && Asleep(task) && !Blocks(task, sig))
      syscall(SYS_tgkill, getpid(), tid, sig);
  }
  closedir(tasks);
}

}  // namespace fanflow::mqtt

// Two habits of paho C's network threads (one send and one receive thread for
// every client of a process) that cost a short-lived command most of its
// time, and what the adapter does about each. paho stays unnamed here.
#pragma once

namespace fanflow::mqtt {

// paho stops its network threads whenever the last client of the process is
// destroyed, polling every 100 ms until they are gone (once or twice), and
// starts them again for the next client. One client that never connects and
// lives as long as the process keeps them running: a `submit --wait` no
// longer spends 200 ms on its way out. Idempotent; call before creating a client.
void KeepNetworkThreadsRunning();

// paho's receive thread sleeps 100 ms each time it finds no socket to poll,
// which is every turn while the process has no connection, so the first
// connect of a process (or the first after the broker was lost) waits out a
// sleep that began just before its socket was added. This ends that sleep
// early with a signal whose handler does nothing (a real-time signal, only
// when the thread is asleep and does not block it): paho simply looks again.
void WakeSleepingReceiveThread();

}  // namespace fanflow::mqtt

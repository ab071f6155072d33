// `mpirun -np 2 geoloc train` (issue #20), run by tests/scripts/with_mpi.sh (skipped without mpirun):
//  - two processes train the model one process trains with two micro-batches per step (--accumulate 2),
//    bit for bit: same shards, same augmentation, same per-micro-batch batch norm, and a two-term sum does
//    not depend on its order; in memory and streamed;
//  - two processes train what one process trains on the whole batch at once, within a tolerance, where
//    batch norm has no say (--freeze-backbone: the heads' gradients differ only in the order of the sums);
//  - with --sync-bn, two processes train what one process trains on the whole batch, backbone and batch norm
//    included, within a tolerance (and without it, far from it);
//  - resuming needs the same number of processes, and continues exactly;
//  - a rank that is killed or stopped ends the run with an error within the timeout.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "cli/cli_run.hpp"
#include "geoloc/safetensors.hpp"
#include "pipeline/photos.hpp"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using geoloc::test::Run;
using geoloc::test::slurp;

namespace {

std::string mpirun() {
  const char* m = std::getenv("GEOLOC_MPIRUN");
  return m && *m ? m : "mpirun";
}
// one core per rank where the machine has them (the ranks then run one pool thread each); mpirun's stdin
// is /dev/null (it forwards stdin to rank 0: reading a terminal from the background stops the process group)
std::string mpirun_np2() { return mpirun() + " --oversubscribe -np 2 "; }
std::string geoloc_bin() { return std::string(GEOLOC_BIN_DIR) + "/geoloc"; }

const geoloc::test::PhotoSet& photos() {
  static const auto set = geoloc::test::make_photos("distributed", 8, 5);
  static const struct Cleanup {  // the folder goes when the tests end
    fs::path dir;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } cleanup{set.dir};
  return set;
}

// The tiny training run of these tests; every process uses one pool thread (--threads 1), so that one
// process and two compute with the same kernels' task split.
std::string train_args(const std::string& extra) {
  return "train --train " + photos().manifest +
         " --arch resnet:basic:1-1:w8:k3s2:nopool --image-size 32 --resize 40 --cells 40,20 --tau-min 3"
         " --scenes even,odd --batch 8 --seed 3 --lr 0.05 --threads 1 " + extra;
}

Run run_in(const std::string& cmd) { return geoloc::test::run_command(cmd + " </dev/null", photos().dir); }

std::string out(const std::string& name) { return (photos().dir / name).string(); }

// Largest |a - b| over the tensors of two model files (which must hold the same names and shapes), and
// the largest |a| (for a relative figure).
std::pair<double, double> max_diff(const std::string& a, const std::string& b) {
  const auto fa = geoloc::safetensors::File::open(a), fb = geoloc::safetensors::File::open(b);
  double diff = 0, mag = 0;
  for (const auto& e : fa.entries()) {
    if (e.dtype != geoloc::safetensors::StDType::F32) continue;
    const auto va = fa.tensor(e.name).to_vector(), vb = fb.tensor(e.name).to_vector();
    REQUIRE(va.size() == vb.size());
    for (size_t i = 0; i < va.size(); ++i) {
      diff = std::max(diff, std::fabs(static_cast<double>(va[i]) - vb[i]));
      mag = std::max(mag, std::fabs(static_cast<double>(va[i])));
    }
  }
  return {diff, mag};
}

}  // namespace

TEST_CASE("mpirun -np 2 geoloc train equals one process with two micro-batches, bit for bit") {
  // in memory; streamed; streamed from a cache that rank 0 writes and both ranks read
  for (const std::string& mode : {std::string(), std::string("--stream "), "--stream --cache " + out("cache") + " "}) {
    CAPTURE(mode);
    const std::string two = out("two.safetensors"), one = out("one.safetensors");
    const Run r2 = run_in(mpirun_np2() + geoloc_bin() + " " + train_args(mode + "--steps 6 --out " + two));
    INFO("mpirun stderr: ", r2.err);
    REQUIRE(r2.status == 0);
    // rank 0 reports; the other rank prints nothing
    CHECK(r2.err.find("data-parallel training: 2 processes (mpi), global batch 8 = 4 per process") != std::string::npos);
    CHECK(geoloc::test::lines(r2.out) == 2);  // "model: ..." and "training curve: ..." once
    const Run r1 = run_in(geoloc_bin() + " " + train_args(mode + "--steps 6 --accumulate 2 --out " + one));
    INFO("one-process stderr: ", r1.err);
    REQUIRE(r1.status == 0);
    CHECK(slurp(two) == slurp(one));
    // the training curves report the same losses
    const std::string c2 = slurp(out("two-curve.json")), c1 = slurp(out("one-curve.json"));
    auto losses = [](const std::string& json) {
      std::vector<std::string> v;
      for (size_t p = json.find("\"loss\""); p != std::string::npos; p = json.find("\"loss\"", p + 1))
        v.push_back(json.substr(p, json.find(',', p) - p));
      return v;
    };
    CHECK(losses(c2).size() == 6);
    CHECK(losses(c2) == losses(c1));
  }
}

TEST_CASE("mpirun -np 2 geoloc train equals one process on the whole batch within the tolerance (no batch norm)") {
  // --freeze-backbone: the backbone runs with BN in eval mode, only the heads train; one process sums each
  // gradient over the 8 samples at once, two processes over 4 each and then add the two halves.
  const std::string two = out("heads-two.safetensors"), one = out("heads-one.safetensors");
  const Run r2 = run_in(mpirun_np2() + geoloc_bin() + " " + train_args("--freeze-backbone --steps 20 --out " + two));
  INFO(r2.err);
  REQUIRE(r2.status == 0);
  const Run r1 = run_in(geoloc_bin() + " " + train_args("--freeze-backbone --steps 20 --out " + one));
  INFO(r1.err);
  REQUIRE(r1.status == 0);
  const auto [diff, mag] = max_diff(two, one);
  MESSAGE("heads after 20 steps, 2 processes vs 1: max |difference| ", diff, " (largest |weight| ", mag, ")");
  CHECK(diff <= 1e-5 * mag);
  CHECK(slurp(two) != std::string());
}

TEST_CASE("mpirun -np 2 geoloc train --sync-bn equals one process on the whole batch within the tolerance") {
  // The backbone trains, with its batch norm in training mode: with --sync-bn each layer normalises with the
  // statistics of all 8 samples, as one process does; without it, each process with its own 4 (far off).
  const std::string sync = out("sync-two.safetensors"), local = out("local-two.safetensors"),
                    one = out("whole-one.safetensors");
  const Run rs = run_in(mpirun_np2() + geoloc_bin() + " " + train_args("--sync-bn --steps 6 --out " + sync));
  INFO(rs.err);
  REQUIRE(rs.status == 0);
  CHECK(rs.err.find("global batch 8 = 4 per process, batch norm synchronised over the processes") != std::string::npos);
  const Run rl = run_in(mpirun_np2() + geoloc_bin() + " " + train_args("--steps 6 --out " + local));
  INFO(rl.err);
  REQUIRE(rl.status == 0);
  const Run r1 = run_in(geoloc_bin() + " " + train_args("--steps 6 --out " + one));
  INFO(r1.err);
  REQUIRE(r1.status == 0);
  const auto [d_sync, mag] = max_diff(sync, one);
  const double d_local = max_diff(local, one).first;
  MESSAGE("weights and running statistics after 6 steps, 2 processes vs 1: max |difference| ", d_sync,
          " with --sync-bn, ", d_local, " without (largest |value| ", mag, ")");
  CHECK(d_sync <= 1e-4 * mag);
  CHECK(d_local > 100 * d_sync);
}

TEST_CASE("a data-parallel checkpoint resumes with the same number of processes only, and exactly") {
  const std::string ck = out("ddp-ck.safetensors"), full = out("ddp-full.safetensors"), part = out("ddp-part.safetensors");
  fs::remove(ck);
  // constant learning rate: a 3-step run's state is the 6-step run's state at step 3
  const std::string common = "--schedule constant --checkpoint " + ck + " --checkpoint-every 3 ";
  REQUIRE(run_in(mpirun_np2() + geoloc_bin() + " " + train_args("--schedule constant --steps 6 --out " + full)).status == 0);
  Run r = run_in(mpirun_np2() + geoloc_bin() + " " + train_args(common + "--steps 3 --out " + part));
  INFO(r.err);
  REQUIRE(r.status == 0);
  REQUIRE(fs::exists(ck));
  // one process cannot resume it
  r = run_in(geoloc_bin() + " " + train_args(common + "--steps 6 --resume " + ck + " --out " + part));
  CHECK(r.status != 0);
  CHECK(r.err.find("was written by a run of 2 processes and this run has 1") != std::string::npos);
  // two can, and continue as the uninterrupted run did
  r = run_in(mpirun_np2() + geoloc_bin() + " " + train_args(common + "--steps 6 --resume " + ck + " --out " + part));
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(slurp(part) == slurp(full));
}

namespace {
// Starts `mpirun -np 2 geoloc train ...` in its own process group; returns mpirun's pid.
pid_t spawn_mpirun(const std::string& args, const fs::path& log) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);
    const std::string cmd = "exec " + mpirun_np2() + geoloc_bin() + " " + args + " </dev/null >" + log.string() + " 2>&1";
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return pid;
}

// The geoloc processes started by mpirun (its children).
std::vector<pid_t> ranks_of(pid_t mpirun_pid) {
  std::vector<pid_t> out;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string stat = slurp(e.path() / "stat");
    const size_t close = stat.rfind(')');
    if (close == std::string::npos || stat.find("(geoloc)") == std::string::npos) continue;
    int ppid = 0;
    char state = 0;
    if (std::sscanf(stat.c_str() + close + 2, "%c %d", &state, &ppid) == 2 && ppid == mpirun_pid)
      out.push_back(static_cast<pid_t>(std::stoi(name)));
  }
  return out;
}

// Waits for pid up to `seconds`; the exit status, or -1 (still running: killed then).
int wait_for(pid_t pid, double seconds) {
  const auto t0 = Clock::now();
  while (std::chrono::duration<double>(Clock::now() - t0).count() < seconds) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::kill(-pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  return -1;
}
}  // namespace

TEST_CASE("a rank that is killed or stopped ends the data-parallel run with an error within the timeout") {
  // 6 s: long enough that a rank delayed by a loaded machine (ctest -j2 beside other jobs) does not time out
  // before the test has seen both ranks train (with 3 s it did, once), short enough to keep the test quick
  const double timeout = 6;
  for (const int sig : {SIGKILL, SIGSTOP}) {
    for (const int victim : {0, 1}) {
      CAPTURE(sig);
      CAPTURE(victim);
      const fs::path log = photos().dir / ("fail-" + std::to_string(sig) + "-" + std::to_string(victim) + ".log");
      const pid_t pid = spawn_mpirun(train_args("--steps 100000 --comm-timeout 6 --out " + out("never.safetensors")), log);
      // wait until both ranks train (rank 0's progress line), then kill or stop one of them
      std::vector<pid_t> ranks;
      const auto t0 = Clock::now();
      while (std::chrono::duration<double>(Clock::now() - t0).count() < 60) {
        ranks = ranks_of(pid);
        if (ranks.size() == 2 && slurp(log).find("step ") != std::string::npos) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      INFO("log: ", slurp(log));
      REQUIRE(ranks.size() == 2);
      std::sort(ranks.begin(), ranks.end());  // ranks are started in order: the lower pid is rank 0 (not relied on)
      const auto hit = Clock::now();
      ::kill(ranks[static_cast<size_t>(victim)], sig);
      const int status = wait_for(pid, timeout + 20);
      const double took = std::chrono::duration<double>(Clock::now() - hit).count();
      const std::string text = slurp(log);
      INFO("log: ", text);
      MESSAGE("signal ", sig, " to one of the ranks: the run ended with status ", status, " after ", took, " s");
      CHECK(status != 0);
      CHECK(status != -1);  // it ended by itself
      CHECK(took < timeout + 20);
      if (sig == SIGSTOP) {
        // the surviving rank notices at its deadline, names itself and stops the job
        CHECK(text.find("did not complete within 6 s on rank") != std::string::npos);
        CHECK(text.find("stops the job") != std::string::npos);
        CHECK(took >= timeout - 0.5);
      }
      CHECK(!fs::exists(out("never.safetensors")));
      for (pid_t r : ranks) ::kill(r, SIGKILL);  // nothing may be left (already gone: ESRCH)
    }
  }
}

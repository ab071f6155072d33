#pragma once
// Learning-rate schedules for the optimisers (optim.hpp): constant, step, multi-step, cosine and cosine
// with warm restarts, after an optional linear warm-up.
#include <cstdint>
#include <string>
#include <vector>

namespace geoloc::optim {

enum class Schedule { Constant, Step, MultiStep, Cosine, CosineRestarts };
Schedule parse_schedule(const std::string& s);  // "constant", "step", "multistep", "cosine", "cosine-restarts"
const char* schedule_name(Schedule s);

/// A schedule over `steps` training steps, from the base rate `lr`.
struct ScheduleOptions {
  Schedule schedule = Schedule::Cosine;
  float lr = 0.05f;
  int64_t steps = 1000;
  int64_t warmup_steps = 0;              // linear warm-up from lr/10
  int64_t step_size = 0;                 // Step: period; CosineRestarts: first period (0 = steps/4)
  std::vector<int64_t> milestones;       // MultiStep
  float gamma = 0.1f;                    // Step / MultiStep factor
  int restart_mult = 2;                  // CosineRestarts: each period this many times longer
};

/// The learning rate at `step` (0-based).
float learning_rate(const ScheduleOptions& c, int64_t step);

}  // namespace geoloc::optim

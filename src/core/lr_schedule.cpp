#include "geoloc/lr_schedule.hpp"

#include <algorithm>
#include <cmath>

#include "geoloc/error.hpp"

namespace geoloc::optim {

namespace {
constexpr double kPi = 3.14159265358979323846;
}  // namespace

Schedule parse_schedule(const std::string& s) {
  for (Schedule k : {Schedule::Constant, Schedule::Step, Schedule::MultiStep, Schedule::Cosine, Schedule::CosineRestarts})
    if (s == schedule_name(k)) return k;
  throw ValueError("unknown schedule '" + s + "' (expected constant, step, multistep, cosine or cosine-restarts)");
}

const char* schedule_name(Schedule s) {
  switch (s) {
    case Schedule::Constant: return "constant";
    case Schedule::Step: return "step";
    case Schedule::MultiStep: return "multistep";
    case Schedule::Cosine: return "cosine";
    case Schedule::CosineRestarts: return "cosine-restarts";
  }
  return "?";
}

float learning_rate(const ScheduleOptions& c, int64_t step) {
  if (step < c.warmup_steps) return c.lr * (0.1f + 0.9f * static_cast<float>(step) / static_cast<float>(c.warmup_steps));
  const int64_t t = step - c.warmup_steps, total = std::max<int64_t>(1, c.steps - c.warmup_steps);
  switch (c.schedule) {
    case Schedule::Constant: return c.lr;
    case Schedule::Step: {
      const int64_t period = c.step_size > 0 ? c.step_size : std::max<int64_t>(1, total / 3);
      return c.lr * std::pow(c.gamma, static_cast<float>(t / period));
    }
    case Schedule::MultiStep: {
      int passed = 0;
      for (int64_t m : c.milestones) passed += step >= m;
      return c.lr * std::pow(c.gamma, static_cast<float>(passed));
    }
    case Schedule::Cosine:
      return c.lr * 0.5f * (1.0f + std::cos(static_cast<float>(kPi) * static_cast<float>(t) / static_cast<float>(total)));
    case Schedule::CosineRestarts: {
      int64_t period = c.step_size > 0 ? c.step_size : std::max<int64_t>(1, total / 4), start = 0;
      while (t >= start + period) {
        start += period;
        period *= std::max(1, c.restart_mult);
      }
      return c.lr * 0.5f *
             (1.0f + std::cos(static_cast<float>(kPi) * static_cast<float>(t - start) / static_cast<float>(period)));
    }
  }
  return c.lr;
}

}  // namespace geoloc::optim

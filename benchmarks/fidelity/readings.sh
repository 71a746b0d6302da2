# The readings of the paper's unstated details screened by benchmarks/fidelity/run.sh.
# One line each: NAME then the --set options it adds to the paper's Table 2 presets (fixed before any run).
READINGS=(
  "literal|"
  "critic-k20|--set critic_epochs=20"
  "critic-mb|--set critic_batch_size=100 --set critic_epochs=10"
  "critic-k20.actor-m100|--set critic_epochs=20 --set batch_size=100"
  "critic-mb.actor-m100.rnorm|--set critic_batch_size=100 --set critic_epochs=10 --set batch_size=100 --set normalize_reward=true"
  "critic-mb.rnorm|--set critic_batch_size=100 --set critic_epochs=10 --set normalize_reward=true"
  "critic-mb.actor-m10|--set critic_batch_size=100 --set critic_epochs=10 --set batch_size=10"
)

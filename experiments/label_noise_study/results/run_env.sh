# The set-up the b15 rows' run.sh (results/imagenette_b15_*/) share, sourced first from the repository root:
#   source "$(dirname "$0")/../run_env.sh"
# Sets S (the study's folder) and K (its kept results, here) in this checkout, and RUNS (the run folders: $RUNS,
# default runs/ beside the study); then changes to $REPO (a worktree whose code runs the rows, default this
# checkout; a row's README names the commit it was measured at) with that tree on PYTHONPATH. B15_FLAGS are the b15
# recipe's study flags without the data root, which each run.sh passes itself from DATA (default
# ../shared/data/imagenette2-224 from $REPO): most make it absolute, as their kept rows recorded it; the fold probes'
# and the rounds' pass it as given, so give those the recorded (absolute) root. A kept row is skipped only when its
# recorded data root is the same string.
ROOT=$(pwd)
S=$ROOT/experiments/label_noise_study
K=$S/results
RUNS=${RUNS:-$S/runs}
cd "${REPO:-.}"
PYTHONPATH=$(pwd)
export PYTHONPATH
B15_FLAGS=(--logging.progress_bar false --config experiments/label_noise_study/imagenette_cpu.yaml
           --config experiments/label_noise_study/imagenette_b15.yaml)

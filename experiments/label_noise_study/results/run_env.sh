# The set-up the b15 rows' run.sh (results/imagenette_b15_*/) share, sourced first from the repository root:
#   source "$(dirname "$0")/../run_env.sh"
# Sets S (the study's folder) and K (its kept results, here) in this checkout, and RUNS (the run folders: $RUNS,
# default runs/ beside the study); then changes to $REPO (a worktree whose code runs the rows, default this
# checkout; a row's README names the commit it was measured at) with that tree on PYTHONPATH; defines run_until
# (a probe's run of the study, stopped once a file exists). B15_FLAGS are the b15
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
run_until() {  # $1: a file, $2: the log, the rest: a study command run in the background until the file exists,
  # then stopped with SIGTERM (the trainer saves a checkpoint and stops its loader workers itself; the same command
  # continues). Fails, naming the log, when the command stops before the file exists.
  local file=$1 logfile=$2 pid
  shift 2
  "$@" >> "$logfile" 2>&1 &
  pid=$!
  until [ -f "$file" ]; do
    kill -0 $pid 2>/dev/null || { echo "the study stopped before $file was written: $logfile" >&2; return 1; }
    sleep 10
  done
  kill -TERM $pid 2>/dev/null || true  # (it may have finished meanwhile)
  wait $pid || true
}

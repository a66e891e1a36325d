# shellcheck shell=bash
# apt on a freshly booted cloud VM: unattended-upgrades and apt-daily hold apt's locks for minutes.
# dpkg's lock has a built-in wait (DPkg::Lock::Timeout); the package lists' lock, which
# `apt-get update` takes, has none, so a refusal for a held lock is retried until the same deadline.

# apt_get ARGS...: apt-get ARGS, waiting up to APT_LOCK_TIMEOUT_SECONDS for a lock another apt holds.
apt_get() {
  local deadline=$((SECONDS + APT_LOCK_TIMEOUT_SECONDS)) output
  until output=$(apt-get -o "DPkg::Lock::Timeout=$((deadline > SECONDS ? deadline - SECONDS : 0))" "$@" 2>&1); do
    if [[ $output != *"Could not get lock"* ]] || ((SECONDS >= deadline)); then
      printf '%s\n' "$output" >&2
      return 1
    fi
    # stderr: callers discard apt's own output, and a wait of minutes must show.
    echo "ollama-gpu: another apt holds its lock (unattended-upgrades?); waiting" >&2
    sleep 5
  done
  printf '%s\n' "$output"
}

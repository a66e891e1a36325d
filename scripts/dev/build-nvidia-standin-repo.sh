#!/usr/bin/env bash
# Builds a STAND-IN for NVIDIA's container-toolkit apt repository in OUTDIR, laid out like
# https://nvidia.github.io/libnvidia-container:
#   OUTDIR/gpgkey                                       ASCII-armored public signing key
#   OUTDIR/stable/deb/nvidia-container-toolkit.list     "deb BASE_URL/stable/deb/$(ARCH) /"
#   OUTDIR/stable/deb/<arch>/{Packages,Packages.gz,Release,InRelease,Release.gpg,*.deb}
# The packages are the harness's own nvidia-container-toolkit, in two versions so that a version
# pin can be tested, with the Python stand-in nvidia-ctk, a no-op stand-in runtime hook (Docker
# accepts `--gpus` only where that hook exists) and a default config.toml (all in
# scripts/dev/nvidia-standin/). BASE_URL is where OUTDIR will be served (default: file://OUTDIR).
# The signing key is made once and kept in the cache, never in the repository; its fingerprint is
# printed as the last line on stdout, for pinning.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=harness-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/harness-common.sh"

(($# == 1 || $# == 2)) || die "usage: $0 OUTDIR [BASE_URL]"
mkdir -p "$1"
outdir=$(cd "$1" && pwd)
base_url=${2:-file://$outdir}
marker=$outdir/.nvidia-standin-repo
if [[ ! -e $marker && -n $(ls -A "$outdir") ]]; then
  die "$outdir is not empty and was not made by this script"
fi

toolkit_versions=(1.17.7-1 1.17.8-1)
standin_dir=$HARNESS_DEV_DIR/nvidia-standin
arch=$(dpkg --print-architecture)
export GNUPGHOME=$HARNESS_CACHE/nvidia-standin/gnupg
key_uid="ollama-gpu-test STAND-IN NVIDIA repository <nvidia-standin@ollama-gpu-test.invalid>"

signing_key_fingerprint() {
  gpg --batch --with-colons --list-secret-keys "$key_uid" 2>/dev/null | awk -F: '$1 == "fpr" { print $10; exit }'
}

ensure_signing_key() {
  if [[ -z $(signing_key_fingerprint) ]]; then
    install -d -m 700 "$GNUPGHOME"
    log "generating the stand-in repository's signing key in $GNUPGHOME"
    gpg --batch --quiet --pinentry-mode loopback --passphrase '' \
      --quick-generate-key "$key_uid" ed25519 sign never
  fi
}

build_package() {
  local version=$1 package_dir=$2 stage
  stage=$(mktemp -d)
  chmod 755 "$stage" # it becomes the package's "./", which dpkg lays over /
  install -d "$stage/DEBIAN" "$stage/usr/bin" "$stage/etc/nvidia-container-runtime"
  sed "s/@TOOLKIT_VERSION@/${version%-*}/" "$standin_dir/nvidia_ctk_standin.py" >"$stage/usr/bin/nvidia-ctk"
  chmod 755 "$stage/usr/bin/nvidia-ctk"
  install -m 755 "$standin_dir/nvidia-container-runtime-hook" "$stage/usr/bin/nvidia-container-runtime-hook"
  install -m 644 "$standin_dir/config.toml" "$stage/etc/nvidia-container-runtime/config.toml"
  echo /etc/nvidia-container-runtime/config.toml >"$stage/DEBIAN/conffiles"
  cat >"$stage/DEBIAN/control" <<EOF
Package: nvidia-container-toolkit
Version: $version
Architecture: $arch
Maintainer: ollama-gpu test harness <nvidia-standin@ollama-gpu-test.invalid>
Depends: python3 (>= 3.11)
Section: utils
Priority: optional
Description: STAND-IN for the NVIDIA Container Toolkit (ollama-gpu tests only)
 Its nvidia-ctk edits Docker's daemon.json and the toolkit's config.toml the
 way NVIDIA's does; there is no GPU support of any kind.
EOF
  dpkg-deb --root-owner-group --build "$stage" "$package_dir/nvidia-container-toolkit_${version}_$arch.deb" >/dev/null
  rm -rf "$stage"
}

# A flat repository, signed both ways apt accepts: InRelease and Release + Release.gpg.
write_indexes() {
  local package_dir=$1 fingerprint=$2 release
  (cd "$package_dir" && dpkg-scanpackages --multiversion . 2>/dev/null >Packages)
  gzip -9n <"$package_dir/Packages" >"$package_dir/Packages.gz"
  release=$(apt-ftparchive -o "APT::FTPArchive::Release::Origin=ollama-gpu-test standin" \
    -o "APT::FTPArchive::Release::Label=nvidia-container-toolkit standin" release "$package_dir")
  printf '%s\n' "$release" >"$package_dir/Release"
  gpg --batch --yes --local-user "$fingerprint" --clearsign -o "$package_dir/InRelease" "$package_dir/Release"
  gpg --batch --yes --local-user "$fingerprint" --armor --detach-sign -o "$package_dir/Release.gpg" \
    "$package_dir/Release"
}

ensure_signing_key
fingerprint=$(signing_key_fingerprint)
rm -rf "$outdir/stable" "$outdir/gpgkey"
package_dir=$outdir/stable/deb/$arch
mkdir -p "$package_dir"
touch "$marker"
for version in "${toolkit_versions[@]}"; do
  build_package "$version" "$package_dir"
done
write_indexes "$package_dir" "$fingerprint"
gpg --batch --armor --export "$fingerprint" >"$outdir/gpgkey"
cat >"$outdir/stable/deb/nvidia-container-toolkit.list" <<EOF
deb $base_url/stable/deb/\$(ARCH) /
#deb $base_url/experimental/deb/\$(ARCH) /
EOF
# The agent gpg started for this keyring would otherwise outlive the script.
gpgconf --kill gpg-agent
log "stand-in repository in $outdir (served as $base_url)"
echo "$fingerprint"

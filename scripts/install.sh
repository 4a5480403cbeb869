#!/usr/bin/env bash
# Install libfewlabels for C programs: the shared and static library, the header, a
# pkg-config file and a CMake package (fewlabelsConfig.cmake and its version file).
#
#   scripts/install.sh [PREFIX]          # builds in release mode; PREFIX defaults to /usr/local
#   FEWLABELS_LIB_DIR=DIR scripts/install.sh PREFIX   # install what DIR holds, without building
#   FEWLABELS_INSTALL_STATIC=0 ...                   # leave out libfewlabels.a
#
# Then: cc prog.c $(pkg-config --cflags --libs fewlabels)
# (set PKG_CONFIG_PATH=PREFIX/lib/pkgconfig for a prefix pkg-config does not search),
# or in CMake: find_package(fewlabels 0.1 REQUIRED) and link fewlabels::fewlabels
# (pass -DCMAKE_PREFIX_PATH=PREFIX for a prefix CMake does not search).
set -euo pipefail
cd "$(dirname "$0")/.."
prefix="${1:-/usr/local}"
libdir="${FEWLABELS_LIB_DIR:-}"
if [ -z "$libdir" ]; then
    cargo build --release --lib
    libdir="${CARGO_TARGET_DIR:-target}/release"
fi
[ -f "$libdir/libfewlabels.so" ] || { echo "install: no libfewlabels.so in $libdir" >&2; exit 1; }
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
mkdir -p "$prefix/lib/pkgconfig" "$prefix/lib/cmake/fewlabels" "$prefix/include"
install -m 0755 "$libdir/libfewlabels.so" "$prefix/lib/libfewlabels.so"
if [ "${FEWLABELS_INSTALL_STATIC:-1}" = 1 ] && [ -f "$libdir/libfewlabels.a" ]; then
    install -m 0644 "$libdir/libfewlabels.a" "$prefix/lib/libfewlabels.a"
fi
install -m 0644 include/fewlabels.h "$prefix/include/fewlabels.h"
cat > "$prefix/lib/pkgconfig/fewlabels.pc" <<PC
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: fewlabels
Description: Few-label GANs (BigGAN + S3GAN) sampled and trained on any GPU through wgpu
Version: $version
Libs: -L\${libdir} -lfewlabels
Libs.private: -lpthread -ldl -lm
Cflags: -I\${includedir}
PC
install -m 0644 cmake/fewlabelsConfig.cmake "$prefix/lib/cmake/fewlabels/fewlabelsConfig.cmake"
sed "s/@FEWLABELS_VERSION@/$version/" cmake/fewlabelsConfigVersion.cmake.in \
    > "$prefix/lib/cmake/fewlabels/fewlabelsConfigVersion.cmake"
echo "installed libfewlabels $version into $prefix"

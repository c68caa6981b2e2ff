#!/usr/bin/env bash
# Fetches ElasticMQ (an SQS-compatible server, Scala, used by the bench as a fast
# SQS for benchmarks: see docs/emulators.md for how it differs from AWS) from Maven
# Central with mvn, and caches its jars under
# ${HOOKLINE_CACHE:-~/.cache/hookline}/elasticmq-<key>/lib/; the key covers the
# version below and this script. The server jar is not self-contained, so a
# one-dependency pom lets mvn copy it with its whole runtime class path. Prints the
# cache directory; tests/src/elasticmq.rs starts the server from it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

ELASTICMQ=1.6.14        # org.elasticmq:elasticmq-server_2.13
DEPENDENCY_PLUGIN=3.8.1 # org.apache.maven.plugins:maven-dependency-plugin

command -v java >/dev/null || { echo "elasticmq/setup.sh: java is not installed; ElasticMQ needs a Java 17 or newer runtime (Debian: openjdk-17-jre-headless)" >&2; exit 1; }
command -v mvn >/dev/null || { echo "elasticmq/setup.sh: mvn is not installed; it fetches ElasticMQ from Maven Central (Debian: maven)" >&2; exit 1; }

cache_root="${HOOKLINE_CACHE:-$HOME/.cache/hookline}"
key="$( { echo "$ELASTICMQ $DEPENDENCY_PLUGIN"; cat "$here/setup.sh"; } | sha256sum | cut -c1-16)"
out="$cache_root/elasticmq-$key"

# The marker says the copy finished; a half-fetched directory is started over.
if [[ -f "$out/.complete" ]]; then
  echo "$out"
  exit 0
fi

echo "elasticmq/setup.sh: fetching ElasticMQ $ELASTICMQ with mvn (first run only, under a minute)" >&2
mkdir -p "$cache_root"
tmp="$out.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.hookline.bench</groupId>
  <artifactId>elasticmq</artifactId>
  <version>0</version>
  <dependencies>
    <dependency>
      <groupId>org.elasticmq</groupId>
      <artifactId>elasticmq-server_2.13</artifactId>
      <version>$ELASTICMQ</version>
    </dependency>
  </dependencies>
</project>
POM
# Maven's log only when it fails (its quiet mode still writes colour codes).
if ! mvn -B -q -f "$tmp/pom.xml" \
    "org.apache.maven.plugins:maven-dependency-plugin:$DEPENDENCY_PLUGIN:copy-dependencies" \
    -DincludeScope=runtime -DoutputDirectory="$tmp/lib" >"$tmp/mvn.log" 2>&1; then
  cat "$tmp/mvn.log" >&2
  echo "elasticmq/setup.sh: mvn could not fetch org.elasticmq:elasticmq-server_2.13:$ELASTICMQ (is Maven Central reachable?)" >&2
  exit 1
fi
rm -rf "$tmp/mvn.log" "$tmp/target" "$tmp/pom.xml"
ls "$tmp/lib/elasticmq-server_2.13-$ELASTICMQ.jar" >/dev/null || {
  echo "elasticmq/setup.sh: mvn finished but elasticmq-server_2.13-$ELASTICMQ.jar is not among the jars" >&2
  exit 1
}

# Another run with the same key may have finished first; keep the one in place.
if [[ -f "$out/.complete" ]]; then
  echo "$out"
  exit 0
fi
touch "$tmp/.complete"
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "$out"

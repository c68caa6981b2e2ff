#!/usr/bin/env bash
# Builds the Velocity bench part: a small Java program that renders API Gateway
# mapping templates with the real Apache Velocity engine, 1.7 or 2.x (see
# src/launcher/hookline/velocity/Main.java). Fetches the jars from Maven Central
# with mvn, compiles the engine side once against each Velocity, and caches it all
# under ${HOOKLINE_CACHE:-~/.cache/hookline}/velocity-<key>/; the key covers the
# versions below, the sources, this script and the JDK. Prints the path of
# the runner script (`render`: JSON request on stdin, JSON result on stdout).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

VELOCITY_1=1.7          # org.apache.velocity:velocity
VELOCITY_2=2.4.1        # org.apache.velocity:velocity-engine-core
JACKSON=2.23.0          # com.fasterxml.jackson.core:jackson-databind
SLF4J_NOP=1.7.36        # the SLF4J API version velocity-engine-core 2.4.1 uses
DEPENDENCY_PLUGIN=3.8.1 # org.apache.maven.plugins:maven-dependency-plugin

for tool in java javac; do
  command -v "$tool" >/dev/null || { echo "velocity/build.sh: $tool is not installed; the Velocity bench part needs a JDK 17 or newer (Debian: openjdk-17-jdk-headless)" >&2; exit 1; }
done
command -v mvn >/dev/null || { echo "velocity/build.sh: mvn is not installed; it fetches the Velocity jars from Maven Central (Debian: maven)" >&2; exit 1; }
# The JDK is identified by its real path and that file's size and time (starting
# javac just to ask its version would cost half a second on every cached run).
jdk="$(readlink -f "$(command -v javac)")"
jdk_id="$jdk $(stat -c '%s %Y' "$jdk")"

cache_root="${HOOKLINE_CACHE:-$HOME/.cache/hookline}"
key="$( { echo "$VELOCITY_1 $VELOCITY_2 $JACKSON $SLF4J_NOP $DEPENDENCY_PLUGIN"; echo "$jdk_id";
          cat "$here/build.sh"; find "$here/src" -name '*.java' -print0 | sort -z | xargs -0 cat; } \
        | sha256sum | cut -c1-16)"
out="$cache_root/velocity-$key"

if [[ -x "$out/render" ]]; then
  echo "$out/render"
  exit 0
fi

javac_version="$(javac -version 2>&1)"
major="$(sed -E 's/^javac ([0-9]+).*/\1/' <<<"$javac_version")"
if [[ ! "$major" =~ ^[0-9]+$ ]] || (( major < 17 )); then
  echo "velocity/build.sh: need javac 17 or newer, found '$javac_version'" >&2
  exit 1
fi
echo "velocity/build.sh: fetching Velocity $VELOCITY_1 and $VELOCITY_2 with mvn and compiling (first run only, under a minute)" >&2
mkdir -p "$cache_root"
tmp="$out.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT

# One tiny pom per class path; copy-dependencies puts each one's jars (transitive
# ones included) into the cache, so the runner does not depend on ~/.m2 staying.
fetch() { # name, then groupId:artifactId:version...
  local name="$1"; shift
  local deps=""
  for gav in "$@"; do
    IFS=: read -r g a v <<<"$gav"
    deps+="<dependency><groupId>$g</groupId><artifactId>$a</artifactId><version>$v</version></dependency>"
  done
  cat >"$tmp/pom-$name.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.hookline.bench</groupId>
  <artifactId>velocity-$name</artifactId>
  <version>0</version>
  <dependencies>$deps</dependencies>
</project>
EOF
  # Maven's log only when it fails (its quiet mode still writes colour codes).
  if ! mvn -B -q -f "$tmp/pom-$name.xml" \
      "org.apache.maven.plugins:maven-dependency-plugin:$DEPENDENCY_PLUGIN:copy-dependencies" \
      -DincludeScope=runtime -DoutputDirectory="$tmp/lib-$name" >"$tmp/mvn-$name.log" 2>&1; then
    cat "$tmp/mvn-$name.log" >&2
    echo "velocity/build.sh: mvn could not fetch $* (is Maven Central reachable?)" >&2
    exit 1
  fi
  rm -f "$tmp/mvn-$name.log"
  rm -rf "$tmp/target"
}
fetch launcher "com.fasterxml.jackson.core:jackson-databind:$JACKSON"
fetch 1.7 "org.apache.velocity:velocity:$VELOCITY_1"
fetch 2 "org.apache.velocity:velocity-engine-core:$VELOCITY_2" "org.slf4j:slf4j-nop:$SLF4J_NOP"

jars() { local dir="$1" sep=""; for jar in "$dir"/*.jar; do printf '%s%s' "$sep" "$jar"; sep=:; done; }
launcher_cp="$(jars "$tmp/lib-launcher")"
javac --release 17 -Xlint:all -Werror -d "$tmp/launcher" -cp "$launcher_cp" \
  "$here"/src/launcher/hookline/velocity/*.java
for engine in 1.7 2; do
  # Compiled against each engine: the sources use only API both have, and this
  # proves it.
  javac --release 17 -Xlint:all -Werror -d "$tmp/engine-$engine" \
    -cp "$launcher_cp:$(jars "$tmp/lib-$engine")" "$here"/src/engine/hookline/velocity/*.java
done

cat >"$tmp/render" <<'EOF'
#!/usr/bin/env bash
# Renders API Gateway mapping templates with Apache Velocity: a JSON request (or an
# array of them) on stdin, the result on stdout (tests/velocity/build.sh made this).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cp_of() { local cp="$1" jar; for jar in "$here/lib-$2"/*.jar; do cp+=":$jar"; done; printf '%s' "$cp"; }
# A short-lived JVM: the C1 compiler alone and the serial GC start fastest.
exec java -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xshare:auto \
  -Dhookline.velocity.classpath.1.7="$(cp_of "$here/engine-1.7" 1.7)" \
  -Dhookline.velocity.classpath.2="$(cp_of "$here/engine-2" 2)" \
  -cp "$(cp_of "$here/launcher" launcher)" hookline.velocity.Main
EOF
chmod +x "$tmp/render"

# Smoke test: each engine loads, is the version asked for, and renders.
smoke="$("$tmp/render" <<'EOF'
[{"template": "#set($a = 'x')$a", "engine": "1.7", "headerCase": "sensitive"},
 {"template": "#set($a = 'x')$a", "engine": "2", "headerCase": "insensitive"}]
EOF
)"
expected="[{\"output\":\"x\",\"status_override\":null,\"engine\":\"$VELOCITY_1\"},{\"output\":\"x\",\"status_override\":null,\"engine\":\"$VELOCITY_2\"}]"
if [[ "$smoke" != "$expected" ]]; then
  echo "velocity/build.sh: the smoke render gave $smoke, expected $expected" >&2
  exit 1
fi

# Another build of the same key may have finished first; keep the one in place.
if [[ -x "$out/render" ]]; then
  echo "$out/render"
  exit 0
fi
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "$out/render"

# Puts Node.js 24 LTS first on PATH, installing it from the npm registry when
# the machine's own Node is older. Source it, so PATH changes in your shell:
#
#   . scripts/use-node-24.sh
#
# The official Linux binary is published on the npm registry as
# node-linux-<arch>; it is installed once under .node/ (ignored by git).
# Only the node binary is replaced: the machine's npm runs on it.
_node24_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
_node24_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if [ "$(_node24_major)" -lt 24 ]; then
  case "$(uname -m)" in
    x86_64) _node24_arch=x64 ;;
    aarch64|arm64) _node24_arch=arm64 ;;
    *) _node24_arch="$(uname -m)" ;;
  esac
  _node24_bin="$_node24_root/.node/node_modules/node-linux-$_node24_arch/bin"
  if [ ! -x "$_node24_bin/node" ]; then
    echo "installing Node.js 24 (node-linux-$_node24_arch@24 from the npm registry) into .node/" >&2
    npm install --prefix "$_node24_root/.node" --no-save --no-audit --no-fund --loglevel=error "node-linux-$_node24_arch@24" >&2 || return 1 2>/dev/null || exit 1
  fi
  export PATH="$_node24_bin:$PATH"
  hash -r 2>/dev/null
fi
echo "using Node.js $(node --version)" >&2
unset _node24_root _node24_arch _node24_bin
unset -f _node24_major

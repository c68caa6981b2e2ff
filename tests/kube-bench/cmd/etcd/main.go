// Command etcd is the upstream etcd server at the version Kubernetes itself
// requires, built from the same module graph as kube-apiserver.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}

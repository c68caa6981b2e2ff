// Package crds only anchors the Prometheus Operator API types that gen.sh turns
// into CRDs with controller-gen, as the Prometheus Operator's own build does.
package crds

import _ "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"

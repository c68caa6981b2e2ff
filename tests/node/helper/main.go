// Command node-helper is what the bench's node needs besides Hookline's images:
//   - `pause`, the pod sandbox's process (containerd's sandbox_image; nothing is pulled);
//   - `handler`, a team's handler container that forwards every delivery it gets to
//     the test's recorder, so the test sees what reached which pod and in which order;
//   - `forward`, the node's daemon that makes the bench's services (on the machine's
//     127.0.0.1) appear on every pod's own 127.0.0.1 (forward.go);
//   - run as `hookline-forward` (a link of that name in the node's CNI bin dir), the
//     CNI plugin that tells that daemon about each new pod's network (cni.go).
package main

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if filepath.Base(os.Args[0]) == cniPluginName {
		cniPlugin()
		return
	}
	if len(os.Args) < 2 {
		log.Fatal("usage: node-helper pause|handler|forward SOCKET")
	}
	switch os.Args[1] {
	case "pause":
		pause()
	case "handler":
		handler()
	case "forward":
		if len(os.Args) != 3 {
			log.Fatal("usage: node-helper forward SOCKET")
		}
		forward(os.Args[2])
	default:
		log.Fatalf("unknown mode %q", os.Args[1])
	}
}

// pause holds the pod's namespaces until told to stop. As PID 1 of the sandbox it
// must exit on SIGTERM/SIGINT, which the kernel otherwise ignores for PID 1.
func pause() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}

// handler listens on $PORT in its pod's network (the worker sidecar calls
// 127.0.0.1; the kubelet probes the pod's IP) and answers 200 only once the recorder
// at $RECORD_URL has the body, so a recorder that is down makes the worker retry
// instead of losing the message. The worker's Hookline-* headers go on with the
// body, and each recording names the pod (`X-Hookline-Pod`, the
// pod's hostname) so a test sees which replica delivered what; $DELAY_MS (optional)
// is how long each delivery takes, so a test can build a backlog.
func handler() {
	port := os.Getenv("PORT")
	record := os.Getenv("RECORD_URL")
	if port == "" || record == "" {
		log.Fatal("handler needs PORT and RECORD_URL")
	}
	var delay time.Duration
	if ms := os.Getenv("DELAY_MS"); ms != "" {
		n, err := strconv.Atoi(ms)
		if err != nil || n < 0 {
			log.Fatalf("DELAY_MS=%q is not a number of milliseconds", ms)
		}
		delay = time.Duration(n) * time.Millisecond
	}
	pod, err := os.Hostname()
	if err != nil {
		log.Fatalf("reading the hostname: %v", err)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, fmt.Sprintf("reading the body: %v", err), http.StatusBadRequest)
			return
		}
		time.Sleep(delay)
		req, err := http.NewRequest(http.MethodPost, record, bytes.NewReader(body))
		if err != nil {
			http.Error(w, fmt.Sprintf("recording: %v", err), http.StatusInternalServerError)
			return
		}
		// What the worker says of the delivery (Hookline-Group-Id, -Message-Id,
		// -Receive-Count, ...) goes on, so the recorder sees it as the handler did.
		for name, values := range r.Header {
			if strings.HasPrefix(strings.ToLower(name), "hookline-") {
				req.Header[name] = values
			}
		}
		req.Header.Set("Content-Type", r.Header.Get("Content-Type"))
		req.Header.Set("X-Hookline-Pod", pod)
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, fmt.Sprintf("recording: %v", err), http.StatusServiceUnavailable)
			return
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			http.Error(w, fmt.Sprintf("recorder answered %d", resp.StatusCode), http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	log.Fatal(http.ListenAndServe(":"+port, mux))
}

// Command node-helper is the two small images the node tests need besides Hookline's:
// `pause`, the pod sandbox's process (containerd's sandbox_image; nothing is pulled),
// and `handler`, a team's handler container that forwards every delivery it gets to
// the test's recorder, so the test sees what reached the pod and in which order.
package main

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		log.Fatal("usage: node-helper pause|handler")
	}
	switch os.Args[1] {
	case "pause":
		pause()
	case "handler":
		handler()
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

// handler listens on 127.0.0.1:$PORT (host network: the worker sidecar calls
// 127.0.0.1) and answers 200 only once the recorder at $RECORD_URL has the body, so
// a recorder that is down makes the worker retry instead of losing the message.
func handler() {
	port := os.Getenv("PORT")
	record := os.Getenv("RECORD_URL")
	if port == "" || record == "" {
		log.Fatal("handler needs PORT and RECORD_URL")
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
		resp, err := client.Post(record, "application/octet-stream", bytes.NewReader(body))
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
	log.Fatal(http.ListenAndServe("127.0.0.1:"+port, mux))
}

package main

// The node's forwarder. Pods on the bench's node have network namespaces of their
// own (a CNI bridge gives each an IP the kubelet probes), but the bench's services
// (the API server, the AWS emulators, a test's recorder) listen only on the
// machine's 127.0.0.1, which a pod's 127.0.0.1 is not. So for every pod network the
// CNI plugin reports (cni.go), this daemon enters that namespace on a thread of its
// own, listens there on 127.0.0.1 at each exposed port, and relays every connection
// to the same port on the machine's 127.0.0.1. A pod then reaches MiniStack at the
// address the operator hands the worker, exactly as a process on the machine does,
// and nothing listens on anything but a loopback.
//
// The protocol, one line per request on the unix socket, answered `OK` or `ERR ...`:
//   EXPOSE <port>            forward <port> in every pod network, now and later
//   ADD <container> <netns>  a pod network was made: listen in it
//   DEL <container>          it goes: close its listeners
//   LIST                     `OK <netns> ...`: the pod networks open now (the node
//                            unmounts what its teardown leaves)

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

type forwarder struct {
	mu    sync.Mutex
	ports []int
	// Per pod network (the sandbox's container id): its netns path and listeners.
	pods map[string]*podNetwork
}

type podNetwork struct {
	netns     string
	listeners []net.Listener
}

func forward(socket string) {
	_ = os.Remove(socket)
	listener, err := net.Listen("unix", socket)
	if err != nil {
		log.Fatalf("listening on %s: %v", socket, err)
	}
	log.Printf("forwarder listening on %s", socket)
	f := &forwarder{pods: map[string]*podNetwork{}}
	for {
		conn, err := listener.Accept()
		if err != nil {
			log.Fatalf("accepting on %s: %v", socket, err)
		}
		go f.serve(conn)
	}
}

func (f *forwarder) serve(conn net.Conn) {
	defer conn.Close()
	lines := bufio.NewScanner(conn)
	for lines.Scan() {
		extra, err := f.handle(strings.Fields(lines.Text()))
		reply := strings.TrimSpace("OK " + extra)
		if err != nil {
			log.Printf("%q: %v", lines.Text(), err)
			reply = "ERR " + strings.ReplaceAll(err.Error(), "\n", " ")
		}
		if _, err := fmt.Fprintln(conn, reply); err != nil {
			return
		}
	}
}

func (f *forwarder) handle(words []string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case len(words) == 1 && words[0] == "LIST":
		var namespaces []string
		for _, pod := range f.pods {
			namespaces = append(namespaces, pod.netns)
		}
		return strings.Join(namespaces, " "), nil
	case len(words) == 2 && words[0] == "EXPOSE":
		port, err := strconv.Atoi(words[1])
		if err != nil || port <= 0 || port > 65535 {
			return "", fmt.Errorf("bad port %q", words[1])
		}
		for _, p := range f.ports {
			if p == port {
				return "", nil
			}
		}
		for id, pod := range f.pods {
			l, err := listenIn(pod.netns, []int{port})
			if err != nil {
				return "", fmt.Errorf("pod network %s: %w", id, err)
			}
			pod.listeners = append(pod.listeners, l...)
		}
		f.ports = append(f.ports, port)
		log.Printf("exposing 127.0.0.1:%d in every pod network", port)
		return "", nil
	case len(words) == 3 && words[0] == "ADD":
		id, netns := words[1], words[2]
		if _, ok := f.pods[id]; ok {
			return "", nil
		}
		l, err := listenIn(netns, f.ports)
		if err != nil {
			return "", err
		}
		f.pods[id] = &podNetwork{netns: netns, listeners: l}
		log.Printf("pod network %s (%s): forwarding %v", id, netns, f.ports)
		return "", nil
	case len(words) == 2 && words[0] == "DEL":
		if pod, ok := f.pods[words[1]]; ok {
			for _, l := range pod.listeners {
				l.Close()
			}
			delete(f.pods, words[1])
			log.Printf("pod network %s closed", words[1])
		}
		return "", nil
	default:
		return "", fmt.Errorf("unknown request %q", strings.Join(words, " "))
	}
}

// listenIn listens on 127.0.0.1 at each port inside the network namespace `netns`
// and relays what it accepts to the machine's 127.0.0.1. The sockets are made on a
// locked thread that entered the namespace and dies with its goroutine (it is never
// unlocked, so Go does not reuse it); a socket keeps the namespace it was made in.
func listenIn(netns string, ports []int) ([]net.Listener, error) {
	type result struct {
		listeners []net.Listener
		err       error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		ns, err := os.Open(netns)
		if err != nil {
			done <- result{err: fmt.Errorf("opening %s: %w", netns, err)}
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- result{err: fmt.Errorf("entering %s: %w", netns, err)}
			return
		}
		var listeners []net.Listener
		for _, port := range ports {
			l, err := listenLoopback(port)
			if err != nil {
				for _, l := range listeners {
					l.Close()
				}
				done <- result{err: fmt.Errorf("listening on 127.0.0.1:%d in %s: %w", port, netns, err)}
				return
			}
			listeners = append(listeners, l)
		}
		done <- result{listeners: listeners}
	}()
	r := <-done
	for i, l := range r.listeners {
		go relay(l, ports[i])
	}
	return r.listeners, r.err
}

// listenLoopback listens on 127.0.0.1:port, waiting a little for the namespace's
// loopback: containerd may set up the loopback and the pod network at once, and
// 127.0.0.1 cannot be bound before `lo` is up.
func listenLoopback(port int) (net.Listener, error) {
	address := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(5 * time.Second)
	for {
		l, err := net.Listen("tcp", address)
		if err == nil || !errors.Is(err, syscall.EADDRNOTAVAIL) || time.Now().After(deadline) {
			return l, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// relay accepts in a pod's namespace and copies each connection both ways to the
// machine's 127.0.0.1:port (dialled from the goroutine's thread, in the machine's
// namespace), until the listener is closed.
func relay(l net.Listener, port int) {
	target := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for {
		in, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer in.Close()
			out, err := net.DialTimeout("tcp", target, 5*time.Second)
			if err != nil {
				log.Printf("relaying to %s: %v", target, err)
				return
			}
			defer out.Close()
			done := make(chan struct{}, 2)
			pipe := func(dst, src net.Conn) {
				_, _ = io.Copy(dst, src)
				if tcp, ok := dst.(*net.TCPConn); ok {
					_ = tcp.CloseWrite()
				}
				done <- struct{}{}
			}
			go pipe(out, in)
			go pipe(in, out)
			<-done
			<-done
		}()
	}
}

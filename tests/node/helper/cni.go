package main

// The CNI plugin `hookline-forward`, chained after the bridge in the node's network
// config: on ADD it asks the node's forwarder (forward.go, at the config's `socket`)
// to listen in the new pod network and returns only once it does, so every
// container of the pod starts with the bench's services on its 127.0.0.1; on DEL it
// has the forwarder close them. It changes no interface, so it passes the previous
// plugin's result on (the CNI spec's rule for a chained plugin).

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"
)

const cniPluginName = "hookline-forward"

type cniConfig struct {
	CNIVersion string          `json:"cniVersion"`
	Socket     string          `json:"socket"`
	PrevResult json.RawMessage `json:"prevResult"`
}

func cniPlugin() {
	if err := cniRun(); err != nil {
		// The error shape of the CNI spec, on stdout, with a non-zero exit.
		version := "1.0.0"
		_ = json.NewEncoder(os.Stdout).Encode(map[string]any{
			"cniVersion": version, "code": 999, "msg": err.Error(),
		})
		os.Exit(1)
	}
}

func cniRun() error {
	command := os.Getenv("CNI_COMMAND")
	if command == "VERSION" {
		fmt.Println(`{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}`)
		return nil
	}
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		return fmt.Errorf("reading the network config: %w", err)
	}
	var config cniConfig
	if err := json.Unmarshal(raw, &config); err != nil {
		return fmt.Errorf("parsing the network config: %w", err)
	}
	if config.Socket == "" {
		return fmt.Errorf("the network config names no forwarder `socket`")
	}
	id := os.Getenv("CNI_CONTAINERID")
	switch command {
	case "ADD":
		netns := os.Getenv("CNI_NETNS")
		if id == "" || netns == "" {
			return fmt.Errorf("ADD without CNI_CONTAINERID or CNI_NETNS")
		}
		if err := ask(config.Socket, fmt.Sprintf("ADD %s %s", id, netns)); err != nil {
			return err
		}
		if len(config.PrevResult) == 0 {
			return fmt.Errorf("hookline-forward is chained after a plugin that gives the pod its IP; no prevResult")
		}
		var result map[string]any
		if err := json.Unmarshal(config.PrevResult, &result); err != nil {
			return fmt.Errorf("parsing prevResult: %w", err)
		}
		result["cniVersion"] = config.CNIVersion
		return json.NewEncoder(os.Stdout).Encode(result)
	case "DEL":
		// DEL must succeed when there is nothing left to remove: a forwarder that is
		// gone has closed its listeners with it.
		if id != "" {
			if err := ask(config.Socket, "DEL "+id); err != nil && !strings.Contains(err.Error(), "connect") {
				return err
			}
		}
		return nil
	case "CHECK", "GC", "STATUS":
		return nil
	default:
		return fmt.Errorf("unknown CNI_COMMAND %q", command)
	}
}

// ask sends one request line to the forwarder and reads its answer.
func ask(socket, request string) error {
	conn, err := net.DialTimeout("unix", socket, 5*time.Second)
	if err != nil {
		return fmt.Errorf("connect to the node's forwarder at %s: %w", socket, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := fmt.Fprintln(conn, request); err != nil {
		return fmt.Errorf("asking the forwarder %q: %w", request, err)
	}
	reply, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading the forwarder's answer to %q: %w", request, err)
	}
	if reply = strings.TrimSpace(reply); reply != "OK" {
		return fmt.Errorf("the forwarder refused %q: %s", request, reply)
	}
	return nil
}

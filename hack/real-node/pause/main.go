// Command pause is the real node's pod sandbox process (containerd's sandbox_image): it holds the pod's
// namespaces, reaps the zombies it inherits as PID 1 and exits on SIGINT or SIGTERM. Built from source here
// because nothing is ever pulled from a registry on the test machines.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}

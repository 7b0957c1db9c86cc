// Command sleeper is the process of TestPrivilegedSourceContainerd's
// container: it sleeps until killed.
package main

import "time"

func main() {
	for {
		time.Sleep(time.Hour)
	}
}

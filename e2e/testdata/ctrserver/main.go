// Command ctrserver is the process of the containerd end-to-end test's
// images: it answers every HTTP request on :8080 with $NAME. Run as
// "server cat FILE" it prints FILE, and as "server cat-after-line FILE" it
// first waits for a line on its standard input (so that the test can move
// it into a cgroup after it started). Run as "tool", it prints "ran" and
// exits.
package main

import (
	"bufio"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

func main() {
	if filepath.Base(os.Args[0]) == "tool" {
		fmt.Println("ran")
		return
	}
	if len(os.Args) == 3 {
		switch os.Args[1] {
		case "cat-after-line":
			if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
				log.Fatal(err)
			}
			fallthrough
		case "cat":
			b, err := os.ReadFile(os.Args[2])
			if err != nil {
				log.Fatal(err)
			}
			os.Stdout.Write(b)
			return
		}
	}
	name := os.Getenv("NAME")
	srv := &http.Server{Addr: ":8080", ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, name) })}
	log.Fatal(srv.ListenAndServe())
}

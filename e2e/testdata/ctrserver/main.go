// Command ctrserver is the process of the containerd end-to-end test's
// images: it answers every HTTP request on :8080 with $NAME.
package main

import (
	"io"
	"log"
	"net/http"
	"os"
	"time"
)

func main() {
	name := os.Getenv("NAME")
	srv := &http.Server{Addr: ":8080", ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, name) })}
	log.Fatal(srv.ListenAndServe())
}

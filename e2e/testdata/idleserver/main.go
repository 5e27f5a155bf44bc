// Command idleserver is the resident-memory baseline of BenchmarkResidentMemory:
// a bare net/http server on 127.0.0.1:$PORT that drains each request body and
// answers "hello". It lives in testdata so that `go build ./...` leaves it out;
// the benchmark builds it by path.
package main

import (
	"io"
	"log"
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "hello\n")
	})
	log.Fatal(http.ListenAndServe("127.0.0.1:"+os.Getenv("PORT"), nil))
}

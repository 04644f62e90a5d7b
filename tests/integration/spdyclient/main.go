// spdyclient: a streaming client built the way client-go's SPDY executor
// and port-forwarder are, on moby/spdystream (the library kubelet and
// crictl use), to test picocri's streaming server with a SPDY stack that
// is not ours.
//
//	spdyclient exec [-tty] [-stdin] [-stdout] [-stderr] [-proto P,...] [-resize WxH] URL
//	    remote command: stdin from os.Stdin, output to os.Stdout/os.Stderr,
//	    prints "status: <error stream>" on stderr, exits with the command's code
//	    (v4 Status), 1 on other failures, 3 when the upgrade fails.
//	spdyclient exec-loop
//	    reads URLs on stdin (one per line), runs each as exec without stdin,
//	    prints "<microseconds> <exit code>" per URL (benchmarks).
//	spdyclient pf-listen URL PORT
//	    kubectl port-forward: listens on 127.0.0.1:0, prints "listening N",
//	    forwards each accepted connection over a new stream pair.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/ioutil"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moby/spdystream"
)

// upgrade dials the URL, sends the upgrade request and returns the SPDY
// connection and the negotiated protocol.
func upgrade(rawurl string, protos []string) (*spdystream.Connection, net.Conn, string, error) {
	u, err := url.Parse(rawurl)
	if err != nil {
		return nil, nil, "", err
	}
	conn, err := net.DialTimeout("tcp", u.Host, 10*time.Second)
	if err != nil {
		return nil, nil, "", err
	}
	req := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n", u.RequestURI(), u.Host)
	for _, p := range protos {
		req += "X-Stream-Protocol-Version: " + p + "\r\n"
	}
	req += "Content-Length: 0\r\n\r\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		conn.Close()
		return nil, nil, "", err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, nil, "", err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := ioutil.ReadAll(io.LimitReader(resp.Body, 4096))
		conn.Close()
		return nil, nil, "", fmt.Errorf("upgrade failed: %d %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	if br.Buffered() > 0 {
		conn.Close()
		return nil, nil, "", fmt.Errorf("unexpected bytes after 101")
	}
	sc, err := spdystream.NewConnection(conn, false)
	if err != nil {
		conn.Close()
		return nil, nil, "", err
	}
	go sc.Serve(spdystream.NoOpStreamHandler)
	return sc, conn, resp.Header.Get("X-Stream-Protocol-Version"), nil
}

func createStream(sc *spdystream.Connection, h http.Header) (*spdystream.Stream, error) {
	s, err := sc.CreateStream(h, nil, false)
	if err != nil {
		return nil, err
	}
	if err := s.WaitTimeout(30 * time.Second); err != nil {
		return nil, err
	}
	return s, nil
}

type status struct {
	Status  string `json:"status"`
	Message string `json:"message"`
	Reason  string `json:"reason"`
	Details struct {
		Causes []struct {
			Reason  string `json:"reason"`
			Message string `json:"message"`
		} `json:"causes"`
	} `json:"details"`
}

type execOpts struct {
	tty, stdin, stdout, stderr bool
	protos                     []string
	resize                     string
	in                         io.Reader
	out, errOut                io.Writer
}

// runExec returns the exit code (v4 status), the raw error-stream text.
func runExec(rawurl string, o execOpts) (int, string, error) {
	sc, conn, proto, err := upgrade(rawurl, o.protos)
	if err != nil {
		return -1, "", err
	}
	defer conn.Close()
	defer sc.Close()
	mk := func(t string) (*spdystream.Stream, error) {
		h := http.Header{}
		h.Set("streamType", t)
		return createStream(sc, h)
	}
	errStream, err := mk("error")
	if err != nil {
		return -1, "", err
	}
	var wg sync.WaitGroup
	if o.stdin {
		s, err := mk("stdin")
		if err != nil {
			return -1, "", err
		}
		go func() {
			io.Copy(s, o.in)
			s.Close()
		}()
	}
	copyOut := func(t string, w io.Writer) error {
		s, err := mk(t)
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			io.Copy(w, s)
		}()
		return nil
	}
	if o.stdout {
		if err := copyOut("stdout", o.out); err != nil {
			return -1, "", err
		}
	}
	if o.stderr && !o.tty {
		if err := copyOut("stderr", o.errOut); err != nil {
			return -1, "", err
		}
	}
	if o.tty && proto != "v2.channel.k8s.io" && proto != "channel.k8s.io" {
		s, err := mk("resize")
		if err != nil {
			return -1, "", err
		}
		if o.resize != "" {
			var w, h int
			fmt.Sscanf(o.resize, "%dx%d", &w, &h)
			json.NewEncoder(s).Encode(map[string]int{"Width": w, "Height": h})
		}
	}
	msg, err := ioutil.ReadAll(errStream)
	if err != nil {
		return -1, "", err
	}
	wg.Wait()
	if len(msg) == 0 {
		return 0, "", nil
	}
	if proto == "v4.channel.k8s.io" || proto == "v5.channel.k8s.io" {
		var st status
		if err := json.Unmarshal(msg, &st); err != nil {
			return -1, string(msg), fmt.Errorf("bad status JSON: %v", err)
		}
		if st.Status == "Success" {
			return 0, string(msg), nil
		}
		if st.Reason == "NonZeroExitCode" {
			for _, c := range st.Details.Causes {
				if c.Reason == "ExitCode" {
					code, err := strconv.Atoi(c.Message)
					if err == nil {
						return code, string(msg), nil
					}
				}
			}
		}
		return -1, string(msg), fmt.Errorf("%s", st.Message)
	}
	return -1, string(msg), fmt.Errorf("%s", msg)
}

func cmdExec(args []string) int {
	fs := flag.NewFlagSet("exec", flag.ExitOnError)
	var o execOpts
	fs.BoolVar(&o.tty, "tty", false, "")
	fs.BoolVar(&o.stdin, "stdin", false, "")
	fs.BoolVar(&o.stdout, "stdout", true, "")
	fs.BoolVar(&o.stderr, "stderr", true, "")
	protos := fs.String("proto", "v4.channel.k8s.io,v3.channel.k8s.io,v2.channel.k8s.io,channel.k8s.io", "")
	fs.StringVar(&o.resize, "resize", "", "")
	fs.Parse(args)
	o.protos = strings.Split(*protos, ",")
	o.in, o.out, o.errOut = os.Stdin, os.Stdout, os.Stderr
	code, raw, err := runExec(fs.Arg(0), o)
	fmt.Fprintf(os.Stderr, "status: %s\n", raw)
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		if strings.HasPrefix(err.Error(), "upgrade failed") {
			return 3
		}
		return 1
	}
	return code
}

func cmdExecLoop() int {
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		start := time.Now()
		code, _, err := runExec(strings.TrimSpace(sc.Text()), execOpts{stdout: true, stderr: true,
			protos: []string{"v4.channel.k8s.io"}, out: ioutil.Discard, errOut: ioutil.Discard})
		if err != nil {
			fmt.Fprintf(os.Stderr, "error: %v\n", err)
			return 1
		}
		fmt.Printf("%d %d\n", time.Since(start).Microseconds(), code)
	}
	return 0
}

func cmdPfListen(args []string) int {
	if len(args) != 2 {
		return 2
	}
	sc, conn, _, err := upgrade(args[0], []string{"portforward.k8s.io"})
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		return 3
	}
	defer conn.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 1
	}
	fmt.Printf("listening %d\n", l.Addr().(*net.TCPAddr).Port)
	os.Stdout.Sync()
	go func() { // exits when its stdin closes
		io.Copy(ioutil.Discard, os.Stdin)
		os.Exit(0)
	}()
	var mu sync.Mutex
	reqID := 0
	for {
		c, err := l.Accept()
		if err != nil {
			return 1
		}
		mu.Lock()
		id := reqID
		reqID++
		mu.Unlock()
		go forward(sc, c, args[1], id)
	}
}

// forward mirrors client-go's portforward.handleConnection.
func forward(sc *spdystream.Connection, c net.Conn, port string, id int) {
	defer c.Close()
	h := http.Header{}
	h.Set("streamType", "error")
	h.Set("port", port)
	h.Set("requestID", strconv.Itoa(id))
	errStream, err := createStream(sc, h)
	if err != nil {
		fmt.Fprintf(os.Stderr, "error stream: %v\n", err)
		return
	}
	errStream.Close() // the client writes nothing on it
	errCh := make(chan error, 1)
	go func() {
		msg, err := ioutil.ReadAll(errStream)
		if err == nil && len(msg) > 0 {
			err = fmt.Errorf("an error occurred forwarding %s: %s", port, msg)
		}
		errCh <- err
	}()
	h.Set("streamType", "data")
	data, err := createStream(sc, h)
	if err != nil {
		fmt.Fprintf(os.Stderr, "data stream: %v\n", err)
		return
	}
	done := make(chan struct{})
	go func() {
		io.Copy(c, data)
		close(done)
	}()
	go func() {
		io.Copy(data, c)
		data.Close()
	}()
	<-done
	select { // the error stream ends with the data stream
	case err := <-errCh:
		if err != nil {
			fmt.Fprintf(os.Stderr, "%v\n", err)
		}
	case <-time.After(5 * time.Second):
	}
	data.Reset()
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: spdyclient exec|exec-loop|pf-listen ...")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "exec":
		os.Exit(cmdExec(os.Args[2:]))
	case "exec-loop":
		os.Exit(cmdExecLoop())
	case "pf-listen":
		os.Exit(cmdPfListen(os.Args[2:]))
	}
	os.Exit(2)
}

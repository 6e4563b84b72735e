// Command kstatus prints what sigs.k8s.io/cli-utils' kstatus library (the status computation Flux and
// kpt use to decide whether a resource is healthy) computes for Kubernetes objects.
//
// It reads JSON from standard input: one object, or a List of them (`kubectl get ... -o json`), and
// writes one JSON line per object: {"kind", "namespace", "name", "status", "message"}. The status is
// kstatus's own: InProgress, Failed, Current, Terminating, NotFound or Unknown. It talks to no server.
// Kondukt's e2e tests use it to check that its resources' conditions mean to GitOps tools what they
// should (hack/kstatus/build.sh builds it).
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type line struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	Message   string `json:"message"`
}

func main() {
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("reading standard input: %v", err)
	}
	var doc map[string]interface{}
	// apimachinery's decoder keeps integers int64, as Unstructured's accessors expect.
	if err := utiljson.Unmarshal(data, &doc); err != nil {
		fail("standard input is not a JSON object: %v", err)
	}
	objects := []map[string]interface{}{doc}
	if items, ok := doc["items"].([]interface{}); ok {
		objects = objects[:0]
		for i, item := range items {
			obj, ok := item.(map[string]interface{})
			if !ok {
				fail("items[%d] is not an object", i)
			}
			objects = append(objects, obj)
		}
	}
	out := json.NewEncoder(os.Stdout)
	for _, obj := range objects {
		u := &unstructured.Unstructured{Object: obj}
		res, err := status.Compute(u)
		if err != nil {
			fail("%s %s: %v", u.GetKind(), u.GetName(), err)
		}
		if err := out.Encode(line{u.GetKind(), u.GetNamespace(), u.GetName(), res.Status.String(), res.Message}); err != nil {
			fail("writing: %v", err)
		}
	}
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "kstatus: "+format+"\n", args...)
	os.Exit(1)
}

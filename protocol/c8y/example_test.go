package c8y_test

import (
	"bufio"
	"errors"
	"fmt"
	"strings"

	"rtcp/protocol/c8y"
)

func ExampleParseOperation() {
	for _, line := range []string{
		"530,DeviceSerial,10.0.0.67,22,eb5e9d13-1caa-486b-bdda-130ca0d87df8\r\n",
		`{"id":"4711","deviceId":"10200","c8y_RemoteAccessConnect":{"hostname":"10.0.0.67","port":5900,"connectionKey":"eb5e9d13"}}`,
		"510,DeviceSerial",
		"530,DeviceSerial,10.0.0.67,70000,eb5e9d13",
	} {
		op, err := c8y.ParseOperation([]byte(line))
		switch {
		case errors.Is(err, c8y.ErrNotRemoteAccess):
			fmt.Println("not ours:", err)
		case err != nil:
			fmt.Println(c8y.SmartRESTStatus(c8y.StatusFailed, err.Error()))
		default:
			fmt.Printf("%+v %s\n", op, c8y.DevicePath(op.Key))
		}
	}
	// Output:
	// {ID: DeviceID: ExternalID:DeviceSerial Host:10.0.0.67 Port:22 Key:eb5e9d13-1caa-486b-bdda-130ca0d87df8} /service/remoteaccess/device/eb5e9d13-1caa-486b-bdda-130ca0d87df8
	// {ID:4711 DeviceID:10200 ExternalID: Host:10.0.0.67 Port:5900 Key:eb5e9d13} /service/remoteaccess/device/eb5e9d13
	// not ours: c8y: SmartREST template 510, not 530 (c8y_RemoteAccessConnect)
	// 502,c8y_RemoteAccessConnect,"c8y: port 70000 is out of range: want 1 to 65535"
}

func ExampleStatusLine() {
	const key = "eb5e9d13-1caa-486b-bdda-130ca0d87df8"
	fmt.Println(c8y.StatusLine(c8y.StatusExecuting, key, ""))
	fmt.Println(c8y.StatusLine(c8y.StatusFailed, key, "dial tcp 10.0.0.67:22: connect: connection refused"))
	fmt.Println(c8y.SmartRESTStatus(c8y.StatusExecuting, ""))
	fmt.Println(c8y.SmartRESTStatusID("4711", c8y.StatusFailed, "dial tcp 10.0.0.67:22: connect: connection refused"))
	// Output:
	// EXECUTING eb5e9d13-1caa-486b-bdda-130ca0d87df8
	// FAILED eb5e9d13-1caa-486b-bdda-130ca0d87df8 dial tcp 10.0.0.67:22: connect: connection refused
	// 501,c8y_RemoteAccessConnect
	// 304,4711,"dial tcp 10.0.0.67:22: connect: connection refused"
}

// An agent reads operations from a stream with SplitOperations: JSON may
// span lines.
func ExampleSplitOperations() {
	in := `530,DeviceSerial,10.0.0.67,22,k1
{
  "id": "4711",
  "c8y_RemoteAccessConnect": {"hostname": "10.0.0.67", "port": 5900, "connectionKey": "k2"}
}
`
	sc := bufio.NewScanner(strings.NewReader(in))
	sc.Split(c8y.SplitOperations)
	for sc.Scan() {
		op, err := c8y.ParseOperation(sc.Bytes())
		fmt.Printf("%+v %v\n", op, err)
	}
	// Output:
	// {ID: DeviceID: ExternalID:DeviceSerial Host:10.0.0.67 Port:22 Key:k1} <nil>
	// {ID:4711 DeviceID: ExternalID: Host:10.0.0.67 Port:5900 Key:k2} <nil>
}

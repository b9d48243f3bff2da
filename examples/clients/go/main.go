// Command create-and-list creates a job with one endpoint on Pacer, then lists the tenant's jobs: the ControlService
// from Go, through the stubs that protoc-gen-go and protoc-gen-go-grpc generate from the protos (build.sh).
//
//	PACER_CONTROL_ADDR=127.0.0.1:50051 PACER_API_KEY="$(cat ../../../var/dev-api-key)" "$(./build.sh)"
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	controlv1 "pacer.dev/api/pacer/control/v1"
)

func main() {
	address := os.Getenv("PACER_CONTROL_ADDR")
	if address == "" {
		address = "127.0.0.1:50051"
	}
	if err := createAndList(address, os.Getenv("PACER_API_KEY")); err != nil {
		fmt.Fprintln(os.Stderr, describe(err))
		os.Exit(1)
	}
}

func createAndList(address, key string) error {
	conn, err := grpc.Dial(address, grpc.WithInsecure())
	if err != nil {
		return err
	}
	defer conn.Close()
	client := controlv1.NewControlServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+key)

	job, err := client.CreateJob(ctx, &controlv1.CreateJobRequest{Name: "Go example"})
	if err != nil {
		return err
	}
	added, err := client.AddEndpointToJob(ctx, &controlv1.AddEndpointToJobRequest{
		JobId:    job.JobId,
		Name:     "health",
		Url:      "https://example.com/health",
		Baseline: &controlv1.Baseline{IntervalMs: 60_000},
		Reason:   "created from Go",
	})
	if err != nil {
		return err
	}
	fmt.Printf("endpoint %s first runs at %s\n", added.EndpointId, added.NextRunAt.AsTime().Format(time.RFC3339))
	reply, err := client.ListJobs(ctx, &controlv1.ListJobsRequest{PageSize: 100})
	if err != nil {
		return err
	}
	for _, summary := range reply.Jobs {
		fmt.Printf("%s  %s  %s\n", summary.JobId, summary.Status, summary.Name)
	}
	return nil
}

// describe names a refusal by its gRPC status: the code (Unauthenticated, InvalidArgument, NotFound, ...) and the
// server's message.
func describe(err error) string {
	st := status.Convert(err)
	return fmt.Sprintf("%s: %s", st.Code(), st.Message())
}

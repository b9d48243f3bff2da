// Create a job with one endpoint on Pacer, then list the tenant's jobs: the ControlService from Node.js.
//
//   PACER_CONTROL_ADDR=127.0.0.1:50051 PACER_API_KEY="$(cat ../../../var/dev-api-key)" node create-and-list.mjs
import { fileURLToPath } from "node:url";
import path from "node:path";
import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";

const here = path.dirname(fileURLToPath(import.meta.url));
const protos = path.resolve(here, "../../../protos");
const definition = protoLoader.loadSync("pacer/control/v1/control_service.proto", {
  includeDirs: [protos],
  keepCase: true, // the proto's own field names: job_id, interval_ms
  longs: Number, // int64 fields as numbers, as the REST gateway and pacerctl --json write them
  enums: String,
  defaults: true,
});
const { ControlService } = grpc.loadPackageDefinition(definition).pacer.control.v1;

const address = process.env.PACER_CONTROL_ADDR || "127.0.0.1:50051";
const client = new ControlService(address, grpc.credentials.createInsecure());
const metadata = new grpc.Metadata();
metadata.set("authorization", `Bearer ${process.env.PACER_API_KEY}`);

// Each RPC as a promise; a refusal carries the gRPC status code and its message.
const call = (rpc, request) =>
  new Promise((resolve, reject) =>
    client[rpc](request, metadata, { deadline: Date.now() + 10_000 }, (error, reply) =>
      error ? reject(error) : resolve(reply),
    ),
  );

try {
  const { job_id } = await call("CreateJob", { name: "Node.js example" });
  const added = await call("AddEndpointToJob", {
    job_id,
    name: "health",
    url: "https://example.com/health",
    baseline: { interval_ms: 60_000 },
    reason: "created from Node.js",
  });
  console.log(`endpoint ${added.endpoint_id} first runs at ${new Date(added.next_run_at.seconds * 1000).toISOString()}`);
  const { jobs } = await call("ListJobs", { page_size: 100 });
  for (const job of jobs) console.log(`${job.job_id}  ${job.status}  ${job.name}`);
} catch (error) {
  console.error(`${grpc.status[error.code]}: ${error.details}`);
  process.exitCode = 1;
} finally {
  client.close();
}

// Validates rendered custom resources (ServiceMonitor, PrometheusRule, HTTPRoute) against their
// CRD schemas, as packaged by @kubernetes-models. Reads a JSON array of objects on stdin; prints
// one line per object; exits 1 if any object is invalid or of a kind it does not know.
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";
import { HTTPRoute } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/HTTPRoute";

const models = {
  "monitoring.coreos.com/v1/ServiceMonitor": ServiceMonitor,
  "monitoring.coreos.com/v1/PrometheusRule": PrometheusRule,
  "gateway.networking.k8s.io/v1/HTTPRoute": HTTPRoute,
};

let input = "";
for await (const chunk of process.stdin) input += chunk;
let failed = false;
for (const obj of JSON.parse(input)) {
  const id = `${obj.kind}/${obj.metadata?.name}`;
  const Model = models[`${obj.apiVersion}/${obj.kind}`];
  if (!Model) {
    console.log(`ERROR ${id}: no CRD schema for ${obj.apiVersion}`);
    failed = true;
    continue;
  }
  try {
    new Model(obj).validate();
    console.log(`ok ${id} against the ${obj.apiVersion} CRD schema`);
  } catch (e) {
    console.log(`ERROR ${id}: ${e.message}`);
    failed = true;
  }
}
process.exit(failed ? 1 : 0);

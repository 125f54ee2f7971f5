-- wrk script: POSTs a small JSON event, as boto3's Invoke does (no Content-Type).
wrk.method = "POST"
wrk.body = '{"hello":"world"}'

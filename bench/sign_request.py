#!/usr/bin/env python3
"""Prints a wrk Lua script that POSTs one Converse request, signed now by botocore's SigV4 signer.

The signature stays valid for the emulator's 5-minute skew window, so a benchmark of a few seconds can
replay it with signature checking on. Usage: sign_request.py HOST:PORT > request.lua
"""
import json
import sys

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

address = sys.argv[1]
body = json.dumps({"messages": [{"role": "user", "content": [{"text": "Hello"}]}]})
request = AWSRequest(method="POST", url=f"http://{address}/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse",
                     data=body.encode(), headers={"Content-Type": "application/json"})
SigV4Auth(Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"), "bedrock", "us-east-1").add_auth(request)
print('wrk.method = "POST"')
print(f"wrk.path = {json.dumps('/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse')}")
print(f"wrk.body = {json.dumps(body)}")
for name, value in request.headers.items():
    print(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}")

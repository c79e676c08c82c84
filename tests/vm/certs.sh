#!/bin/bash
# Certificates of the docs/certificates.md profile for the VM tests' agents.
# Source it, then: make_vm_certs DIR  -> DIR/{ca.crt,a.crt,a.key,b.crt,b.key,operator.crt,operator.key}
make_vm_certs() {
	(
		set -e
		mkdir -p "$1"
		cd "$1"
		openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 1 -subj /CN=xevf-vm-ca 2>/dev/null
		for name in a b operator; do
			uri=urn:xevf:node:node-$name
			[ $name = operator ] && uri=urn:xevf:operator
			printf 'subjectAltName=IP:127.0.0.1,URI:%s\nextendedKeyUsage=serverAuth,clientAuth\n' $uri >$name.ext
			openssl req -newkey rsa:2048 -nodes -keyout $name.key -out $name.csr -subj /CN=$name 2>/dev/null
			openssl x509 -req -in $name.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out $name.crt -days 1 \
				-extfile $name.ext 2>/dev/null
		done
		rm -f ca.key ./*.csr ./*.ext ./*.srl
	)
}

/* protobuf <-> gRPC byte buffers. */
#include "rpc.h"

#include <grpc/byte_buffer_reader.h>

grpc_byte_buffer *rpc_pack(const ProtobufCMessage *msg)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	grpc_slice slice = grpc_slice_malloc(len);
	grpc_byte_buffer *bb;

	protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(slice));
	bb = grpc_raw_byte_buffer_create(&slice, 1);
	grpc_slice_unref(slice);
	return bb;
}

ProtobufCMessage *rpc_unpack(const ProtobufCMessageDescriptor *desc, grpc_byte_buffer *bb)
{
	grpc_byte_buffer_reader reader;
	grpc_slice slice;
	ProtobufCMessage *msg;

	if (!bb || !grpc_byte_buffer_reader_init(&reader, bb))
		return NULL;
	slice = grpc_byte_buffer_reader_readall(&reader);
	grpc_byte_buffer_reader_destroy(&reader);
	msg = protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(slice), GRPC_SLICE_START_PTR(slice));
	/* protobuf-c ends a string at its first NUL byte: "m\0one" and "m\0two"
	 * would both read as "m". Such a message packs to fewer bytes than came
	 * in; it is refused rather than read as something it does not say. */
	if (msg && protobuf_c_message_get_packed_size(msg) != GRPC_SLICE_LENGTH(slice)) {
		protobuf_c_message_free_unpacked(msg, NULL);
		msg = NULL;
	}
	grpc_slice_unref(slice);
	return msg;
}


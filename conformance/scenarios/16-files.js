// File upload: a device gets a SAS URI from the hub, writes the blob to
// the storage account (Azurite here) and reports it; the service's file
// notification receiver hears of it; @azure/storage-blob reads the blob
// back byte for byte; a failed upload gives no notification; the invoker
// downloads what a device uploaded.
'use strict';
const crypto = require('crypto');
const { PassThrough } = require('stream');
const { Mqtt } = require('azure-iot-device-mqtt');
const { Amqp } = require('azure-iot-device-amqp');
const { BlobServiceClient, BlockBlobClient } = require('@azure/storage-blob');
const { createDevice, openDevice, serviceClient, eventually, assert } = require('../lib');

const storage = () => process.env.STORAGE_CONNECTION_STRING;
const container = () => process.env.STORAGE_CONTAINER || 'fileuploads';
const noStorage = 'STORAGE_CONNECTION_STRING names no storage account to read the blobs back from';

// notifications opens the service's file notification receiver.
async function notifications(service) {
  await service.open();
  const receiver = await new Promise((resolve, reject) => service.getFileNotificationReceiver((err, r) => (err ? reject(err) : resolve(r))));
  const got = [];
  receiver.on('message', (msg) => {
    got.push(JSON.parse(msg.getData().toString('utf-8')));
    receiver.complete(msg, () => {});
  });
  return got;
}

async function readBack(blobName) {
  return BlobServiceClient.fromConnectionString(storage()).getContainerClient(container()).getBlobClient(blobName).downloadToBuffer();
}

for (const [name, transport] of [['Mqtt', Mqtt], ['Amqp', Amqp]]) {
  exports[`uploadToBlob${name}`] = async () => {
    if (!storage()) return noStorage;
    const { id, cs } = await createDevice(`upload${name.toLowerCase()}`);
    const device = await openDevice(cs, transport);
    const service = serviceClient();
    try {
      const got = await notifications(service);
      const data = crypto.randomBytes(70000);
      const stream = new PassThrough();
      stream.end(data);
      await device.uploadToBlob(`logs/${name}.bin`, stream, data.length);
      const n = await eventually(async () => {
        const f = got.find((x) => x.deviceId === id);
        assert(f, `notifications ${JSON.stringify(got)}`);
        return f;
      }, 20000);
      assert(n.blobName === `${id}/logs/${name}.bin` && n.blobSizeInBytes === data.length && n.blobUri.endsWith(`/${container()}/${n.blobName}`),
        `notification ${JSON.stringify(n)}`);
      const back = await readBack(n.blobName);
      assert(back.equals(data), `read back ${back.length} bytes, which differ`);
    } finally {
      await service.close();
      await device.close();
    }
  };
}

exports.sasFlowAndFailure = async () => {
  if (!storage()) return noStorage;
  const { id, cs } = await createDevice('uploadsas');
  const device = await openDevice(cs, Mqtt);
  const service = serviceClient();
  try {
    const got = await notifications(service);
    // A failed upload is reported first: it must give no notification.
    const failed = await device.getBlobSharedAccessSignature('failed.txt');
    await device.notifyBlobUploadStatus(failed.correlationId, false, 500, 'the upload failed');
    const sas = await device.getBlobSharedAccessSignature('ok.txt');
    assert(sas.sasToken.startsWith('?') && sas.blobName === `${id}/ok.txt` && sas.containerName === container(), `SAS ${JSON.stringify(sas)}`);
    const data = Buffer.from('written with the SAS the hub signed');
    await new BlockBlobClient(`https://${sas.hostName}/${sas.containerName}/${sas.blobName}${sas.sasToken}`).upload(data, data.length);
    await device.notifyBlobUploadStatus(sas.correlationId, true, 201, 'done');
    const n = await eventually(async () => {
      const f = got.find((x) => x.deviceId === id);
      assert(f, `notifications ${JSON.stringify(got)}`);
      return f;
    }, 20000);
    assert(n.blobName === sas.blobName && got.filter((x) => x.deviceId === id).length === 1, `notifications ${JSON.stringify(got)}`);
    assert((await readBack(sas.blobName)).equals(data), 'read back');
  } finally {
    await service.close();
    await device.close();
  }
};

// The invoker as the back end: `invoker files -download` hears of a file a
// device uploaded with the SDK and downloads it from the storage account,
// byte for byte.
exports.invokerDownloads = async () => {
  if (!storage()) return noStorage;
  const fs = require('fs');
  const os = require('os');
  const path = require('path');
  const readline = require('readline');
  const { spawn } = require('child_process');
  const { id, cs } = await createDevice('uploadinvoker');
  const device = await openDevice(cs, Mqtt);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'downloads-'));
  const bin = path.join(process.env.BIN || 'bin', 'invoker');
  const invoker = spawn(bin, ['files', '-download', dir, '-storage-connection-string', storage(), '-storage-container', container(),
    '-ca-file', process.env.NODE_EXTRA_CA_CERTS, '-output', 'json', '-timeout', '60s'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  invoker.stderr.on('data', (b) => { stderr += b; });
  const exited = new Promise((resolve) => invoker.on('exit', resolve));
  try {
    const heard = new Promise((resolve, reject) => {
      readline.createInterface({ input: invoker.stdout }).on('line', (line) => {
        const n = JSON.parse(line);
        if (n.deviceId === id) resolve(n);
      });
      exited.then((code) => reject(new Error(`invoker exited with ${code}: ${stderr}`)));
    });
    const data = crypto.randomBytes(100000);
    const stream = new PassThrough();
    stream.end(data);
    await device.uploadToBlob('logs/for-the-invoker.bin', stream, data.length);
    const n = await heard;
    assert(n.downloadedTo === path.join(dir, id, 'logs', 'for-the-invoker.bin'), `downloaded to ${n.downloadedTo}`);
    assert(fs.readFileSync(n.downloadedTo).equals(data), 'the downloaded file differs from the upload');
  } finally {
    invoker.kill();
    await exited;
    await device.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
};

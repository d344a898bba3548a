// Direct methods: an offline device (404), a method the device does not
// handle (504 after the response timeout) and a device status passed back.
'use strict';
const { createDevice, openDevice, serviceClient, assert, expectError } = require('../lib');

exports.offlineDevice = async () => {
  const { id } = await createDevice('offline');
  await expectError(serviceClient().invokeDeviceMethod(id, { methodName: 'rebootDevice', responseTimeoutInSeconds: 5 }),
    (err) => assert(err.response && err.response.statusCode === 404, `status ${err.response && err.response.statusCode}: ${err.message}`));
};

exports.unhandledMethodTimesOut = async () => {
  const { id, cs } = await createDevice('unhandled');
  const device = await openDevice(cs);
  try {
    device.onDeviceMethod('somethingElse', (req, res) => res.send(200));
    const start = Date.now();
    await expectError(serviceClient().invokeDeviceMethod(id, { methodName: 'notRegistered', responseTimeoutInSeconds: 5 }),
      (err) => assert(err.response && err.response.statusCode === 504, `status ${err.response && err.response.statusCode}: ${err.message}`));
    assert(Date.now() - start >= 4000, 'the 504 came before the timeout');
  } finally {
    await device.close();
  }
};

exports.deviceStatusAndPayload = async () => {
  const { id, cs } = await createDevice('status');
  const device = await openDevice(cs);
  try {
    device.onDeviceMethod('fail', (req, res) => res.send(500, { echo: req.payload }));
    const { result } = await serviceClient().invokeDeviceMethod(id, { methodName: 'fail', payload: { n: 1 }, responseTimeoutInSeconds: 10 });
    assert(result.status === 500 && result.payload.echo.n === 1, JSON.stringify(result));
  } finally {
    await device.close();
  }
};

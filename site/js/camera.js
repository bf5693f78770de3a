// The camera: open it for the webcam mode, close it so that its light goes off, and say in plain
// words why it could not be opened.
//
// openCamera(mediaDevices) -> Promise<MediaStream> (video only, front camera preferred); rejects with an
//   Error whose message is cameraErrorMessage's.
// closeCamera(stream): stops every track (the browser then releases the camera).
// cameraErrorMessage(error) -> plain words for a getUserMedia failure (by DOMException name).

const MESSAGES = {
  NotAllowedError: 'The camera was not allowed. To use it, allow the camera for this site in your browser’s '
    + 'settings, then start it again. You can also check a photo instead.',
  SecurityError: 'This page may not use the camera here (it must be opened over HTTPS).',
  NotFoundError: 'No camera was found on this device.',
  OverconstrainedError: 'No camera on this device can give a usable video.',
  NotReadableError: 'The camera could not be started: another app or tab may be using it. Close it and try again.',
  AbortError: 'The camera could not be started. Try again.',
};

export function cameraErrorMessage(error) {
  return MESSAGES[error?.name] ?? `The camera could not be started (${error?.message ?? error}).`;
}

export async function openCamera(mediaDevices) {
  if (!mediaDevices?.getUserMedia) {
    throw new Error('This browser cannot use a camera on this page (it needs HTTPS and a recent browser).');
  }
  try {
    return await mediaDevices.getUserMedia({
      audio: false,
      video: { facingMode: 'user', width: { ideal: 640 }, height: { ideal: 480 } },
    });
  } catch (error) {
    throw new Error(cameraErrorMessage(error));
  }
}

export function closeCamera(stream) {
  for (const track of stream?.getTracks() ?? []) track.stop();
}

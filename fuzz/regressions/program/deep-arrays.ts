return [
